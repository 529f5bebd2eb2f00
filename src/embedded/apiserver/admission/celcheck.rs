//! Type-checking of CRD validation rules at CRD creation, as kube-apiserver's CEL checker does:
//! `self` (and `oldSelf`) take the type the schema gives the rule's node, and a rule that selects
//! an undefined field, applies an operator or function to types it has no overload for, names
//! an undeclared identifier or function, or does not evaluate to a bool, refuses the CRD with
//! cel-go's message and position.
//!
//! The checker is deliberately partial: wherever it cannot be sure of a type (fields that keep
//! unknown content, int-or-string, functions of the Kubernetes CEL libraries, namespaced
//! functions) it stops judging that part, so it never refuses a rule kube-apiserver accepts.
use cel::common::ast::{Expr, IdedExpr, LiteralValue, SourceInfo};
use serde_json::{Value, json};

/// A CEL type, as far as the checker knows it.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    /// Not known here: nothing about it is judged.
    Unknown,
    /// A subexpression already reported an error.
    Error,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    Duration,
    Timestamp,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    /// An object with declared properties (the schema node).
    Object(Value),
    Dyn,
}

impl Ty {
    /// cel-go's name of the type, or `None` when the checker would rather not name it.
    fn name(&self) -> Option<String> {
        Some(match self {
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Uint => "uint".into(),
            Ty::Double => "double".into(),
            Ty::String => "string".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Null => "null_type".into(),
            Ty::Duration => "google.protobuf.Duration".into(),
            Ty::Timestamp => "google.protobuf.Timestamp".into(),
            Ty::Dyn => "dyn".into(),
            Ty::List(e) => format!("list({})", e.name()?),
            Ty::Map(k, v) => format!("map({}, {})", k.name()?, v.name()?),
            Ty::Unknown | Ty::Error | Ty::Object(_) => return None,
        })
    }

    fn known(&self) -> bool {
        !matches!(self, Ty::Unknown | Ty::Error | Ty::Dyn)
    }

    fn numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }
}

/// The CEL type of a schema node (`SchemaDeclType`).
fn schema_type(schema: &Value) -> Ty {
    if schema["x-kubernetes-int-or-string"] == json!(true)
        || schema["x-kubernetes-preserve-unknown-fields"] == json!(true)
    {
        return Ty::Unknown;
    }
    match schema["type"].as_str() {
        Some("boolean") => Ty::Bool,
        Some("integer") => Ty::Int,
        Some("number") => Ty::Double,
        Some("string") => match schema["format"].as_str() {
            Some("byte") => Ty::Bytes,
            Some("duration") => Ty::Duration,
            Some("date-time") => Ty::Timestamp,
            _ => Ty::String,
        },
        Some("array") => Ty::List(Box::new(schema_type(&schema["items"]))),
        Some("object") => {
            if schema["additionalProperties"].is_object() {
                Ty::Map(
                    Box::new(Ty::String),
                    Box::new(schema_type(&schema["additionalProperties"])),
                )
            } else if schema["properties"].is_object() {
                Ty::Object(schema.clone())
            } else {
                Ty::Unknown
            }
        }
        _ => Ty::Unknown,
    }
}

/// Functions of CEL, its extensions and the Kubernetes libraries that the checker does not type:
/// a call to one of them is `Unknown`, never an error.
const KNOWN_FUNCTIONS: &[&str] = &[
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "duration",
    "timestamp",
    "dyn",
    "type",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
    "charAt",
    "indexOf",
    "lastIndexOf",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "substring",
    "trim",
    "join",
    "quote",
    "reverse",
    "format",
    "isSorted",
    "sum",
    "min",
    "max",
    "find",
    "findAll",
    "url",
    "isURL",
    "getScheme",
    "getHost",
    "getHostname",
    "getPort",
    "getEscapedPath",
    "getQuery",
    "quantity",
    "isQuantity",
    "isInteger",
    "asInteger",
    "asApproximateFloat",
    "sign",
    "add",
    "sub",
    "compareTo",
    "isGreaterThan",
    "isLessThan",
    "ip",
    "isIP",
    "cidr",
    "isCIDR",
    "family",
    "isUnspecified",
    "isLoopback",
    "isLinkLocalMulticast",
    "isLinkLocalUnicast",
    "isGlobalUnicast",
    "containsIP",
    "containsCIDR",
    "masked",
    "prefixLength",
    "semver",
    "isSemver",
    "major",
    "minor",
    "patch",
    "slice",
    "flatten",
    "distinct",
    "sort",
    "sortBy",
    "range",
    "hasValue",
    "value",
    "orValue",
    "or",
    "of",
    "none",
    "ofNonZeroValue",
    "optMap",
    "optFlatMap",
    "greatest",
    "least",
    "ceil",
    "floor",
    "round",
    "trunc",
    "abs",
    "isInf",
    "isNaN",
    "isFinite",
    "bitAnd",
    "bitOr",
    "bitXor",
    "bitNot",
    "bitShiftLeft",
    "bitShiftRight",
    "encode",
    "decode",
    "equivalent",
    "intersects",
    "transformList",
    "transformMap",
    "transformMapEntry",
    "first",
    "last",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "size",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "existsOne",
];

/// Namespaces of namespaced functions (`sets.contains(...)`, `math.greatest(...)`).
const NAMESPACES: &[&str] = &["sets", "lists", "math", "base64", "strings", "optional", "regex"];

/// Identifiers that name types.
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

struct Checker<'a> {
    info: &'a SourceInfo,
    errors: Vec<(u32, String)>,
    scopes: Vec<(String, Ty)>,
}

impl Checker<'_> {
    fn error(&mut self, e: &IdedExpr, message: String) -> Ty {
        let at = self.info.offset_for(e.id).map_or(0, |(start, _)| start);
        self.errors.push((at, message));
        Ty::Error
    }

    fn lookup(&self, name: &str) -> Option<Ty> {
        self.scopes
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }

    fn check(&mut self, e: &IdedExpr) -> Ty {
        match &e.expr {
            Expr::Literal(l) => literal(l),
            Expr::Ident(name) => match self.lookup(name) {
                Some(t) => t,
                None if TYPE_NAMES.contains(&name.as_str()) || NAMESPACES.contains(&name.as_str()) => Ty::Unknown,
                None => self.error(e, format!("undeclared reference to '{name}' (in container '')")),
            },
            Expr::Select(s) => {
                let operand = self.check(&s.operand);
                let field = self.select(e, &operand, &s.field);
                if s.test { Ty::Bool } else { field }
            }
            Expr::List(l) => {
                let items: Vec<Ty> = l.elements.iter().map(|x| self.check(x)).collect();
                let first = items.first().cloned().unwrap_or(Ty::Unknown);
                let elem = if items.iter().all(|t| *t == first) {
                    first
                } else {
                    Ty::Dyn
                };
                Ty::List(Box::new(elem))
            }
            Expr::Map(_) => Ty::Unknown,
            Expr::Comprehension(c) => {
                let range = self.check(&c.iter_range);
                let var = match &range {
                    Ty::List(elem) => (**elem).clone(),
                    Ty::Map(key, _) => (**key).clone(),
                    _ => Ty::Unknown,
                };
                let accu = self.check(&c.accu_init);
                self.scopes.push((c.iter_var.clone(), var));
                if let Some(v2) = &c.iter_var2 {
                    self.scopes.push((v2.clone(), Ty::Unknown));
                }
                self.scopes.push((c.accu_var.clone(), accu));
                self.check(&c.loop_cond);
                let step = self.check(&c.loop_step);
                let depth = self.scopes.len();
                self.scopes[depth - 1].1 = step;
                let result = self.check(&c.result);
                self.scopes.truncate(depth - 1 - usize::from(c.iter_var2.is_some()) - 1);
                result
            }
            Expr::Call(call) => {
                let target = call.target.as_ref().map(|t| self.check(t));
                let args: Vec<Ty> = call.args.iter().map(|a| self.check(a)).collect();
                self.call(e, &call.func_name, call.target.as_deref(), target, args)
            }
            _ => Ty::Unknown,
        }
    }

    fn select(&mut self, e: &IdedExpr, operand: &Ty, field: &str) -> Ty {
        match operand {
            Ty::Object(schema) => match schema["properties"].get(field) {
                Some(sub) => schema_type(sub),
                None => self.error(e, format!("undefined field '{field}'")),
            },
            Ty::Map(_, value) => (**value).clone(),
            Ty::Error => Ty::Error,
            _ => Ty::Unknown,
        }
    }

    fn call(
        &mut self,
        e: &IdedExpr,
        name: &str,
        target_expr: Option<&IdedExpr>,
        target: Option<Ty>,
        args: Vec<Ty>,
    ) -> Ty {
        if target.as_ref().is_some_and(|t| *t == Ty::Error) || args.contains(&Ty::Error) {
            return Ty::Error;
        }
        if let Some(Expr::Ident(ns)) = target_expr.map(|t| &t.expr)
            && NAMESPACES.contains(&ns.as_str())
        {
            return Ty::Unknown;
        }
        let mut all: Vec<Ty> = target.iter().cloned().collect();
        all.extend(args.iter().cloned());
        let result = match name {
            "_&&_" | "_||_" => logical(&all),
            "!_" => same_as(&all, &[&[Ty::Bool]], Ty::Bool),
            "@not_strictly_false" => Some(Ty::Bool),
            "-_" => negate(&all),
            "_==_" | "_!=_" => equality(&all),
            "_<_" | "_<=_" | "_>_" | "_>=_" => ordering(&all),
            "_+_" => plus(&all),
            "_-_" => minus(&all),
            "_*_" | "_/_" => arithmetic(&all, true),
            "_%_" => arithmetic(&all, false),
            "_?_:_" => conditional(&all),
            "_[_]" => index(&all),
            "@in" => membership(&all),
            "size" => size(&all),
            "contains" | "startsWith" | "endsWith" | "matches" if target.is_some() => {
                same_as(&all, &[&[Ty::String, Ty::String]], Ty::Bool)
            }
            _ if KNOWN_FUNCTIONS.contains(&name) => Some(Ty::Unknown),
            _ => return self.error(e, format!("undeclared reference to '{name}' (in container '')")),
        };
        match result {
            Some(t) => t,
            None => self.no_overload(e, name, &all, target.is_some()),
        }
    }

    fn no_overload(&mut self, e: &IdedExpr, name: &str, all: &[Ty], member: bool) -> Ty {
        let names: Option<Vec<String>> = all.iter().map(Ty::name).collect();
        let Some(names) = names else { return Ty::Unknown };
        let signature = if member && !names.is_empty() {
            format!("{}.({})", names[0], names[1..].join(", "))
        } else {
            format!("({})", names.join(", "))
        };
        self.error(
            e,
            format!("found no matching overload for '{name}' applied to '{signature}'"),
        )
    }
}

fn literal(l: &LiteralValue) -> Ty {
    match l {
        LiteralValue::Boolean(_) => Ty::Bool,
        LiteralValue::Bytes(_) => Ty::Bytes,
        LiteralValue::Double(_) => Ty::Double,
        LiteralValue::Int(_) => Ty::Int,
        LiteralValue::Null => Ty::Null,
        LiteralValue::String(_) => Ty::String,
        LiteralValue::UInt(_) => Ty::Uint,
    }
}

/// `Some(Unknown)` when an argument is not known well enough to judge.
fn unjudged(args: &[Ty]) -> bool {
    args.iter().any(|a| !a.known() || matches!(a, Ty::Object(_)))
}

/// The result when `args` match one of `overloads` exactly.
fn same_as(args: &[Ty], overloads: &[&[Ty]], result: Ty) -> Option<Ty> {
    if unjudged(args) {
        return Some(Ty::Unknown);
    }
    overloads.contains(&args).then_some(result)
}

fn logical(args: &[Ty]) -> Option<Ty> {
    let judged = args.iter().all(|a| *a == Ty::Bool || !a.known()) || unjudged(args);
    judged.then_some(Ty::Bool)
}

fn negate(args: &[Ty]) -> Option<Ty> {
    same_as(
        args,
        &[&[Ty::Int], &[Ty::Double]],
        args.first().cloned().unwrap_or(Ty::Unknown),
    )
}

/// Equality needs operands of one type (numbers compare across their kinds).
fn equality(args: &[Ty]) -> Option<Ty> {
    if unjudged(args) || args.contains(&Ty::Null) {
        return Some(Ty::Bool);
    }
    let same = args[0] == args[1] || (args[0].numeric() && args[1].numeric());
    same.then_some(Ty::Bool)
}

fn ordering(args: &[Ty]) -> Option<Ty> {
    if unjudged(args) {
        return Some(Ty::Bool);
    }
    let (a, b) = (&args[0], &args[1]);
    let comparable = matches!(a, Ty::String | Ty::Bytes | Ty::Bool | Ty::Duration | Ty::Timestamp) && a == b;
    (comparable || (a.numeric() && b.numeric())).then_some(Ty::Bool)
}

fn plus(args: &[Ty]) -> Option<Ty> {
    if unjudged(args) {
        return Some(Ty::Unknown);
    }
    let (a, b) = (&args[0], &args[1]);
    match (a, b) {
        (Ty::List(x), Ty::List(y)) => Some(if x == y { a.clone() } else { Ty::List(Box::new(Ty::Dyn)) }),
        (Ty::Timestamp, Ty::Duration) | (Ty::Duration, Ty::Timestamp) => Some(Ty::Timestamp),
        _ if a == b
            && matches!(
                a,
                Ty::Int | Ty::Uint | Ty::Double | Ty::String | Ty::Bytes | Ty::Duration
            ) =>
        {
            Some(a.clone())
        }
        _ => None,
    }
}

fn minus(args: &[Ty]) -> Option<Ty> {
    if unjudged(args) {
        return Some(Ty::Unknown);
    }
    match (&args[0], &args[1]) {
        (Ty::Timestamp, Ty::Timestamp) => Some(Ty::Duration),
        (Ty::Timestamp, Ty::Duration) => Some(Ty::Timestamp),
        (a, b) if a == b && matches!(a, Ty::Int | Ty::Uint | Ty::Double | Ty::Duration) => Some(a.clone()),
        _ => None,
    }
}

fn arithmetic(args: &[Ty], doubles: bool) -> Option<Ty> {
    if unjudged(args) {
        return Some(Ty::Unknown);
    }
    let (a, b) = (&args[0], &args[1]);
    let ok = a == b && (matches!(a, Ty::Int | Ty::Uint) || (doubles && *a == Ty::Double));
    ok.then(|| a.clone())
}

fn conditional(args: &[Ty]) -> Option<Ty> {
    if args[0].known() && args[0] != Ty::Bool {
        return None;
    }
    Some(if args[1] == args[2] {
        args[1].clone()
    } else {
        Ty::Unknown
    })
}

fn index(args: &[Ty]) -> Option<Ty> {
    match (&args[0], &args[1]) {
        (Ty::List(elem), i) if !i.known() || *i == Ty::Int || *i == Ty::Uint => Some((**elem).clone()),
        (Ty::Map(key, value), k) if !k.known() || k == &**key => Some((**value).clone()),
        (c, k) if !c.known() || !k.known() || matches!(c, Ty::Object(_)) => Some(Ty::Unknown),
        _ => None,
    }
}

fn membership(args: &[Ty]) -> Option<Ty> {
    match (&args[0], &args[1]) {
        (x, Ty::List(elem)) if !x.known() || !elem.known() || **elem == *x || (x.numeric() && elem.numeric()) => {
            Some(Ty::Bool)
        }
        (x, Ty::Map(key, _)) if !x.known() || **key == *x => Some(Ty::Bool),
        (_, c) if !c.known() || matches!(c, Ty::Object(_)) => Some(Ty::Bool),
        (x, _) if !x.known() => Some(Ty::Bool),
        _ => None,
    }
}

fn size(args: &[Ty]) -> Option<Ty> {
    match args {
        [one] if !one.known() || matches!(one, Ty::String | Ty::Bytes | Ty::List(_) | Ty::Map(..)) => Some(Ty::Int),
        [_] => None,
        _ => Some(Ty::Unknown),
    }
}

/// `line:column` (1-based) of a byte offset.
fn position(source: &str, offset: u32) -> (usize, usize) {
    let before = &source[..(offset as usize).min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// cel-go's rendering of an issue: `ERROR: <input>:L:C: msg`, the line and a caret under it.
fn render(source: &str, offset: u32, message: &str) -> String {
    let (line, column) = position(source, offset);
    let text = source.lines().nth(line - 1).unwrap_or_default();
    format!(
        "ERROR: <input>:{line}:{column}: {message}\n | {text}\n | {}^",
        ".".repeat(column - 1)
    )
}

/// What type-checking a rule over the schema node `schema` finds: `Some(detail)` with the
/// detail kube-apiserver reports, `None` when the rule checks (or cannot be judged).
pub(crate) fn check_rule(program: &cel::Program, source: &str, schema: &Value, root: bool) -> Option<String> {
    let mut self_type = schema_type(schema);
    if root && let Ty::Object(s) = &mut self_type {
        // At the root, `self.metadata` shows only the name and generateName.
        s["properties"]["metadata"] = json!({"type": "object", "properties": {
            "name": {"type": "string"}, "generateName": {"type": "string"}}});
        s["properties"]["apiVersion"] = json!({"type": "string"});
        s["properties"]["kind"] = json!({"type": "string"});
    }
    let mut checker = Checker {
        info: program.source_info(),
        errors: Vec::new(),
        scopes: vec![("self".into(), self_type.clone()), ("oldSelf".into(), self_type)],
    };
    let out = checker.check(program.expression());
    if !checker.errors.is_empty() {
        checker.errors.sort_by_key(|(at, _)| *at);
        let lines: Vec<String> = checker
            .errors
            .iter()
            .map(|(at, message)| render(source, *at, message))
            .collect();
        return Some(format!("compilation failed: {}", lines.join("\n")));
    }
    (out.known() && out != Ty::Bool).then(|| "cel expression must evaluate to a bool".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(rule: &str) -> Option<String> {
        let schema = json!({"type": "object", "properties": {"size": {"type": "integer"}, "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}}, "labels": {"type": "object",
            "additionalProperties": {"type": "string"}}}});
        let program = cel::Program::compile(rule).expect("parses");
        check_rule(&program, rule, &schema, false).map(|d| d.lines().next().unwrap_or_default().to_string())
    }

    #[test]
    fn rules_are_type_checked_as_kube_apiserver_does() {
        assert_eq!(detail("self.size > 1"), None);
        assert_eq!(detail("self.tags.all(t, size(t) < 10)"), None);
        assert_eq!(detail("!has(self.name) || self.name.startsWith('a')"), None);
        assert_eq!(detail("self.labels.k == 'v'"), None);
        assert_eq!(detail("self.size in [1, 2]"), None);
        assert_eq!(detail("self.name.lowerAscii() == 'x'"), None);
        assert_eq!(
            detail("self.missing > 1").as_deref(),
            Some("compilation failed: ERROR: <input>:1:5: undefined field 'missing'")
        );
        assert_eq!(
            detail("self.size > 'a'").as_deref(),
            Some(
                "compilation failed: ERROR: <input>:1:11: found no matching overload for '_>_' applied to '(int, string)'"
            )
        );
        assert_eq!(
            detail("self.name.nope()").as_deref(),
            Some("compilation failed: ERROR: <input>:1:15: undeclared reference to 'nope' (in container '')")
        );
        assert_eq!(
            detail("self.size + 1").as_deref(),
            Some("cel expression must evaluate to a bool")
        );
        assert_eq!(
            detail("self.name.startsWith(1)").as_deref(),
            Some(
                "compilation failed: ERROR: <input>:1:21: found no matching overload for 'startsWith' applied to 'string.(int)'"
            )
        );
    }
}
