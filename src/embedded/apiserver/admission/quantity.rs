//! Resource quantities (`resource.Quantity`): parsing with apimachinery's rules and messages,
//! comparison, and the canonical form the API server stores and prints (`1.5` → `1500m`,
//! `1024Mi` → `1Gi`). Values are held as nano-units in an `i128`; a finer fraction rounds up
//! to 1n, as Go's parser does.
use std::cmp::Ordering;

/// How the quantity was written, which decides how it is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `Ki`, `Mi`, …
    BinarySi,
    /// `m`, ``, `k`, `M`, …
    DecimalSi,
    /// `e3`, `E-6`, …
    DecimalExponent,
}

/// A parsed quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quantity {
    nanos: i128,
    format: Format,
}

/// `ErrFormatWrong`.
pub(crate) const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// `ErrSuffix`.
const SUFFIX_ERROR: &str = "unable to parse quantity's suffix";

const NANO: i128 = 1_000_000_000;

/// The parts of a quantity string: sign, integer digits, fraction digits, suffix.
fn split(s: &str) -> Result<(bool, &str, &str, &str), &'static str> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            pos = 1;
            true
        }
        Some(b'+') => {
            pos = 1;
            false
        }
        _ => false,
    };
    let digits_from = |start: usize| start + bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    let int_end = digits_from(pos);
    let int = &s[pos..int_end];
    pos = int_end;
    let mut frac = "";
    if bytes.get(pos) == Some(&b'.') {
        let end = digits_from(pos + 1);
        frac = &s[pos + 1..end];
        pos = end;
    }
    let suffix_start = pos;
    while pos < bytes.len() && b"eEinumkKMGTP".contains(&bytes[pos]) {
        pos += 1;
    }
    if pos < bytes.len() && (bytes[pos] == b'-' || bytes[pos] == b'+') {
        pos += 1;
    }
    if digits_from(pos) != bytes.len() {
        return Err(FORMAT_ERROR);
    }
    Ok((negative, int, frac, &s[suffix_start..]))
}

/// (base, exponent, format) of a suffix.
fn interpret(suffix: &str) -> Option<(u32, i32, Format)> {
    let decimal = |e| Some((10, e, Format::DecimalSi));
    let binary = |e| Some((2, e, Format::BinarySi));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let e: i32 = rest.parse().ok()?;
            Some((10, e, Format::DecimalExponent))
        }
    }
}

/// `n / d` rounded away from zero (`n` is not negative here).
fn div_up(n: i128, d: i128) -> i128 {
    (n + d - 1) / d
}

impl Quantity {
    /// Parses a quantity as `resource.ParseQuantity` does; the error is apimachinery's message.
    pub(crate) fn parse(s: &str) -> Result<Quantity, &'static str> {
        let s = s.trim();
        if s.is_empty() {
            return Err(FORMAT_ERROR);
        }
        let (negative, int, frac, suffix) = split(s)?;
        let (base, exp, format) = interpret(suffix).ok_or(SUFFIX_ERROR)?;
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        // Anything bigger than this is far beyond what any resource holds; it saturates.
        let mantissa: i128 = if digits.len() > 30 {
            i128::MAX / 4
        } else {
            digits.parse().unwrap_or(0)
        };
        let scale = frac.len() as i32;
        let nanos = if base == 10 {
            let e = exp - scale + 9;
            if e >= 0 {
                10i128.checked_pow(e as u32).and_then(|p| mantissa.checked_mul(p))
            } else {
                10i128
                    .checked_pow((-e) as u32)
                    .map(|p| div_up(mantissa, p))
                    .or(Some(i128::from(mantissa > 0)))
            }
        } else {
            2i128
                .checked_pow(exp as u32)
                .and_then(|p| mantissa.checked_mul(p))
                .and_then(|v| v.checked_mul(NANO))
                .and_then(|v| 10i128.checked_pow(scale as u32).map(|d| div_up(v, d)))
        }
        .unwrap_or(i128::MAX / 4);
        let mut format = format;
        if format == Format::BinarySi && nanos > 0 && nanos < NANO {
            format = Format::DecimalSi;
        }
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    /// The value in nano-units.
    pub(crate) fn nanos(&self) -> i128 {
        self.nanos
    }

    /// Whether it is below zero.
    pub(crate) fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Whether it is a whole number.
    pub(crate) fn is_integer(&self) -> bool {
        self.nanos % NANO == 0
    }

    /// The canonical form (`Quantity.String()`).
    pub(crate) fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".into();
        }
        let binary = self.format == Format::BinarySi && self.nanos % NANO == 0 && (self.nanos / NANO).abs() >= 1024;
        if binary {
            let mut n = self.nanos / NANO;
            let mut exp = 0;
            while n % 1024 == 0 && exp < 6 {
                n /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return format!("{n}{suffix}");
        }
        let mut n = self.nanos;
        let mut exp: i32 = -9;
        while n % 10 == 0 {
            n /= 10;
            exp += 1;
        }
        match exp.rem_euclid(3) {
            1 => {
                n *= 10;
                exp -= 1;
            }
            2 => {
                n *= 100;
                exp -= 2;
            }
            _ => {}
        }
        if self.format == Format::DecimalExponent {
            return if exp == 0 { n.to_string() } else { format!("{n}e{exp}") };
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => return format!("{n}e{exp}"),
        };
        format!("{n}{suffix}")
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.nanos.cmp(&other.nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s).unwrap().canonical()
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("1500"), "1500");
        assert_eq!(canon("2000"), "2k");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("512Ki"), "512Ki");
        assert_eq!(canon("0.5Ki"), "512");
        assert_eq!(canon("-5Mi"), "-5Mi");
        assert_eq!(canon("-1"), "-1");
        assert_eq!(canon("100m"), "100m");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("0.0000000001"), "1n");
    }

    #[test]
    fn bad_quantities_are_refused() {
        assert_eq!(Quantity::parse("abc"), Err(FORMAT_ERROR));
        assert_eq!(Quantity::parse("1Xi"), Err(FORMAT_ERROR));
        assert_eq!(Quantity::parse("1Ki1"), Err(SUFFIX_ERROR));
        assert_eq!(Quantity::parse("1kk"), Err(SUFFIX_ERROR));
        assert!(Quantity::parse("2Gi").unwrap() > Quantity::parse("1Gi").unwrap());
    }
}
