//! Metric math for GetMetricData and alarms: a parser and evaluator for CloudWatch's expression
//! language, covering arithmetic (`+ - * /`, unary minus, parentheses) between time series,
//! arrays of series and scalars; references to other queries by id; arrays `[a, b]`;
//! `METRICS()` / `METRICS("filter")`; `SUM`, `AVG`, `MIN`, `MAX` (over an array: per timestamp;
//! over one series: a scalar), `ABS`, `CEIL`, `FLOOR`, `SQRT`, `EXP`, `LOG`, `LOG10` (per point)
//! and `FILL(x, value | REPEAT)`.
//!
//! Arithmetic between two series keeps the timestamps both have, as CloudWatch does; points that
//! are not finite (division by zero) are dropped.

use std::collections::BTreeMap;

/// A time series: timestamps (ms) to values.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: BTreeMap<i64, f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MathValue {
    Scalar(f64),
    Series(Series),
    Array(Vec<Series>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MathError(pub String);

/// How deeply parentheses, function calls and arrays may nest in one expression. Parsing and
/// evaluating recurse once per level (a few stack frames each), so a bound is what keeps a
/// hostile `((((…` or `ABS(ABS(…` from overflowing the stack and aborting the server; chains
/// of operators (`a+0+0+…`, `----a`) do not nest and are not limited by it. Wharf's limit: AWS
/// documents none, and 2048 characters allow far deeper input than anyone writes.
pub const MAX_NESTING: usize = 32;

/// What an expression can see.
pub trait MathContext {
    /// The value of another query, by id (`None`: no such id).
    fn resolve(&mut self, id: &str) -> Result<Option<MathValue>, MathError>;
    /// Every `MetricStat` query's series, in request order (`METRICS()`).
    fn metrics(&mut self) -> Result<Vec<Series>, MathError>;
    /// The period grid of the request (every period start in the time range), for `FILL`.
    fn grid(&self) -> Vec<i64>;
    /// Account for `points` new datapoints the expression is about to hold in memory (copies
    /// of other queries' series, `FILL` output); an error stops the evaluation.
    fn charge(&mut self, points: usize) -> Result<(), MathError>;
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Number(f64),
    Text(String),
    Ident(String),
    Neg(Box<Expr>),
    /// Left-associative operators of one precedence: `first op1 e1 op2 e2 …`, kept flat so a
    /// long chain costs no recursion.
    Chain(Box<Expr>, Vec<(char, Expr)>),
    Call(String, Vec<Expr>),
    Array(Vec<Expr>),
}

/// A parsed expression and how deeply it nests (1 for a plain `a + b`).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    expr: Expr,
    nesting: usize,
}

impl Parsed {
    /// The deepest nesting of parentheses, calls and arrays, plus one.
    pub fn nesting(&self) -> usize {
        self.nesting
    }

    /// The ids the expression refers to (to order evaluation and detect cycles).
    pub fn references(&self) -> Vec<String> {
        fn walk(expr: &Expr, out: &mut Vec<String>) {
            match expr {
                Expr::Ident(id) if !is_keyword(id) => out.push(id.clone()),
                Expr::Neg(e) => walk(e, out),
                Expr::Chain(first, rest) => {
                    walk(first, out);
                    rest.iter().for_each(|(_, e)| walk(e, out));
                }
                Expr::Call(_, args) | Expr::Array(args) => args.iter().for_each(|a| walk(a, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.expr, &mut out);
        out
    }

    pub fn evaluate(&self, ctx: &mut dyn MathContext) -> Result<MathValue, MathError> {
        eval(&self.expr, ctx)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Ident(String),
    Text(String),
    Punct(char),
}

fn tokenize(source: &str) -> Result<Vec<Token>, MathError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            let n = text
                .parse()
                .map_err(|_| MathError(format!("Invalid number {text}.")))?;
            tokens.push(Token::Number(n));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == '"' || c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == c)
                .ok_or_else(|| MathError("Unterminated string in expression.".into()))?;
            tokens.push(Token::Text(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if "+-*/(),[]".contains(c) {
            tokens.push(Token::Punct(c));
            i += 1;
        } else {
            return Err(MathError(format!(
                "Unexpected character '{c}' in expression."
            )));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// The deepest `depth` reached.
    deepest: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Token::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), MathError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(MathError(format!("Expected '{c}' in expression.")))
        }
    }

    /// `depth`: how many parentheses, calls and arrays enclose this expression. Every
    /// recursion of the parser goes through here, so this one check bounds it.
    fn expr(&mut self, depth: usize) -> Result<Expr, MathError> {
        if depth >= MAX_NESTING {
            return Err(MathError("Expression is nested too deeply.".into())); // guessed
        }
        self.deepest = self.deepest.max(depth);
        self.chain(depth, &['+', '-'], Self::term)
    }

    fn term(&mut self, depth: usize) -> Result<Expr, MathError> {
        self.chain(depth, &['*', '/'], Self::unary)
    }

    /// `operand (op operand)*`, flat.
    fn chain(
        &mut self,
        depth: usize,
        ops: &[char],
        operand: fn(&mut Self, usize) -> Result<Expr, MathError>,
    ) -> Result<Expr, MathError> {
        let first = operand(self, depth)?;
        let mut rest = Vec::new();
        while let Some(op) = ops.iter().copied().find(|op| self.eat(*op)) {
            rest.push((op, operand(self, depth)?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Expr::Chain(Box::new(first), rest)
        })
    }

    /// Signs in front of a primary, counted rather than recursed into: `- - -x` is `-x`.
    fn unary(&mut self, depth: usize) -> Result<Expr, MathError> {
        let mut negative = false;
        loop {
            if self.eat('-') {
                negative = !negative;
            } else if !self.eat('+') {
                break;
            }
        }
        let inner = self.primary(depth)?;
        Ok(if negative {
            Expr::Neg(Box::new(inner))
        } else {
            inner
        })
    }

    fn list(&mut self, close: char, depth: usize) -> Result<Vec<Expr>, MathError> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr(depth + 1)?);
            if self.eat(close) {
                return Ok(items);
            }
            self.expect(',')?;
        }
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, MathError> {
        let token = self
            .peek()
            .cloned()
            .ok_or_else(|| MathError("Unexpected end of expression.".into()))?;
        self.pos += 1;
        match token {
            Token::Number(n) => Ok(Expr::Number(n)),
            Token::Text(s) => Ok(Expr::Text(s)),
            Token::Ident(name) => {
                if self.eat('(') {
                    Ok(Expr::Call(
                        name.to_ascii_uppercase(),
                        self.list(')', depth)?,
                    ))
                } else {
                    Ok(Expr::Ident(name))
                }
            }
            Token::Punct('(') => {
                let inner = self.expr(depth + 1)?;
                self.expect(')')?;
                Ok(inner)
            }
            Token::Punct('[') => Ok(Expr::Array(self.list(']', depth)?)),
            Token::Punct(c) => Err(MathError(format!("Unexpected '{c}' in expression."))),
        }
    }
}

/// Parse `source`.
pub fn parse(source: &str) -> Result<Parsed, MathError> {
    let mut parser = Parser {
        tokens: tokenize(source)?,
        pos: 0,
        deepest: 0,
    };
    let expr = parser.expr(0)?;
    if parser.pos != parser.tokens.len() {
        return Err(MathError(
            "Unexpected input after the end of the expression.".into(),
        ));
    }
    Ok(Parsed {
        expr,
        nesting: parser.deepest + 1,
    })
}

fn is_keyword(id: &str) -> bool {
    matches!(id.to_ascii_uppercase().as_str(), "REPEAT" | "LINEAR")
}

/// The datapoints a value holds.
pub fn point_count(value: &MathValue) -> usize {
    match value {
        MathValue::Scalar(_) => 0,
        MathValue::Series(s) => s.points.len(),
        MathValue::Array(list) => list.iter().map(|s| s.points.len()).sum(),
    }
}

fn eval(expr: &Expr, ctx: &mut dyn MathContext) -> Result<MathValue, MathError> {
    match expr {
        Expr::Number(n) => Ok(MathValue::Scalar(*n)),
        Expr::Text(_) => Err(MathError(
            "A string is only valid as a function argument.".into(),
        )),
        Expr::Ident(id) => {
            let value = ctx
                .resolve(id)?
                .ok_or_else(|| MathError(format!("Unrecognized identifier {id}.")))?;
            // Each reference is a copy: `[e1, e1, e1, …]` multiplies memory.
            ctx.charge(point_count(&value))?;
            Ok(value)
        }
        Expr::Neg(inner) => Ok(map(eval(inner, ctx)?, |v| -v)),
        Expr::Chain(first, rest) => {
            let mut value = eval(first, ctx)?;
            for (op, operand) in rest {
                value = binary(*op, value, eval(operand, ctx)?)?;
            }
            Ok(value)
        }
        Expr::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match eval(item, ctx)? {
                    MathValue::Series(s) => out.push(s),
                    MathValue::Array(list) => out.extend(list),
                    MathValue::Scalar(_) => {
                        return Err(MathError("Arrays may only contain time series.".into()))
                    }
                }
            }
            Ok(MathValue::Array(out))
        }
        Expr::Call(name, args) => call(name, args, ctx),
    }
}

fn apply(op: char, a: f64, b: f64) -> f64 {
    match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        _ => a / b,
    }
}

fn finite(points: impl Iterator<Item = (i64, f64)>) -> BTreeMap<i64, f64> {
    points.filter(|(_, v)| v.is_finite()).collect()
}

fn series_op(op: char, a: &Series, b: &Series) -> Series {
    Series {
        label: a.label.clone(),
        points: finite(
            a.points
                .iter()
                .filter_map(|(t, x)| b.points.get(t).map(|y| (*t, apply(op, *x, *y)))),
        ),
    }
}

fn binary(op: char, a: MathValue, b: MathValue) -> Result<MathValue, MathError> {
    use MathValue::*;
    Ok(match (a, b) {
        (Scalar(x), Scalar(y)) => Scalar(apply(op, x, y)),
        (Series(s), Scalar(y)) => Series(map_series(&s, |x| apply(op, x, y))),
        (Scalar(x), Series(s)) => Series(map_series(&s, |y| apply(op, x, y))),
        (Series(a), Series(b)) => Series(series_op(op, &a, &b)),
        (Array(list), Scalar(y)) => Array(
            list.iter()
                .map(|s| map_series(s, |x| apply(op, x, y)))
                .collect(),
        ),
        (Scalar(x), Array(list)) => Array(
            list.iter()
                .map(|s| map_series(s, |y| apply(op, x, y)))
                .collect(),
        ),
        (Array(list), Series(b)) => Array(list.iter().map(|a| series_op(op, a, &b)).collect()),
        (Series(a), Array(list)) => Array(list.iter().map(|b| series_op(op, &a, b)).collect()),
        (Array(_), Array(_)) => {
            return Err(MathError(
                "Arithmetic between two arrays of time series is not supported.".into(),
            ))
        }
    })
}

fn map_series(s: &Series, f: impl Fn(f64) -> f64) -> Series {
    Series {
        label: s.label.clone(),
        points: finite(s.points.iter().map(|(t, v)| (*t, f(*v)))),
    }
}

fn map(value: MathValue, f: impl Fn(f64) -> f64) -> MathValue {
    match value {
        MathValue::Scalar(x) => MathValue::Scalar(f(x)),
        MathValue::Series(s) => MathValue::Series(map_series(&s, f)),
        MathValue::Array(list) => {
            MathValue::Array(list.iter().map(|s| map_series(s, &f)).collect())
        }
    }
}

fn aggregate(name: &str, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(match name {
        "SUM" => values.iter().sum(),
        "AVG" => values.iter().sum::<f64>() / values.len() as f64,
        "MIN" => values.iter().copied().fold(f64::INFINITY, f64::min),
        _ => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

fn call(name: &str, args: &[Expr], ctx: &mut dyn MathContext) -> Result<MathValue, MathError> {
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(MathError(format!(
                "{name} takes {n} argument(s), got {}.",
                args.len()
            )))
        }
    };
    match name {
        "METRICS" => {
            let filter = match args {
                [] => None,
                [Expr::Text(s)] => Some(s.clone()),
                _ => return Err(MathError("METRICS takes an optional string filter.".into())),
            };
            let all = ctx.metrics()?;
            ctx.charge(all.iter().map(|s| s.points.len()).sum())?;
            Ok(MathValue::Array(
                all.into_iter()
                    .filter(|s| filter.as_ref().is_none_or(|f| s.label.contains(f.as_str())))
                    .collect(),
            ))
        }
        "SUM" | "AVG" | "MIN" | "MAX" => {
            arity(1)?;
            match eval(&args[0], ctx)? {
                MathValue::Scalar(x) => Ok(MathValue::Scalar(x)),
                MathValue::Series(s) => {
                    let values: Vec<f64> = s.points.values().copied().collect();
                    Ok(match aggregate(name, &values) {
                        Some(v) => MathValue::Scalar(v),
                        None => MathValue::Series(Series {
                            label: s.label,
                            points: BTreeMap::new(),
                        }),
                    })
                }
                MathValue::Array(list) => {
                    let mut by_time: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                    for s in &list {
                        for (t, v) in &s.points {
                            by_time.entry(*t).or_default().push(*v);
                        }
                    }
                    Ok(MathValue::Series(Series {
                        label: name.to_string(),
                        points: finite(
                            by_time
                                .iter()
                                .filter_map(|(t, vs)| aggregate(name, vs).map(|v| (*t, v))),
                        ),
                    }))
                }
            }
        }
        "ABS" | "CEIL" | "FLOOR" | "SQRT" | "EXP" | "LOG" | "LOG10" => {
            arity(1)?;
            let f: fn(f64) -> f64 = match name {
                "ABS" => f64::abs,
                "CEIL" => f64::ceil,
                "FLOOR" => f64::floor,
                "SQRT" => f64::sqrt,
                "EXP" => f64::exp,
                "LOG" => f64::ln,
                _ => f64::log10,
            };
            Ok(map(eval(&args[0], ctx)?, f))
        }
        "FILL" => {
            arity(2)?;
            let target = eval(&args[0], ctx)?;
            let grid = ctx.grid();
            let fill = |s: &Series, how: &Fill| -> Series {
                let mut points = s.points.clone();
                let mut last: Option<f64> = None;
                for t in &grid {
                    match s.points.get(t) {
                        Some(v) => last = Some(*v),
                        None => {
                            let value = match how {
                                Fill::Value(v) => Some(*v),
                                Fill::Repeat => last.or_else(|| s.points.values().next().copied()),
                            };
                            if let Some(v) = value {
                                points.insert(*t, v);
                            }
                        }
                    }
                }
                Series {
                    label: s.label.clone(),
                    points,
                }
            };
            let how = match &args[1] {
                Expr::Ident(k) if k.eq_ignore_ascii_case("REPEAT") => Fill::Repeat,
                other => match eval(other, ctx)? {
                    MathValue::Scalar(v) => Fill::Value(v),
                    _ => {
                        return Err(MathError(
                            "FILL's second argument must be a number or REPEAT.".into(),
                        ))
                    }
                },
            };
            // A filled series holds up to a point per period of the grid; account for each
            // before building it.
            let mut filled = |s: &Series| -> Result<Series, MathError> {
                ctx.charge(grid.len().max(s.points.len()))?;
                Ok(fill(s, &how))
            };
            Ok(match target {
                MathValue::Series(s) => MathValue::Series(filled(&s)?),
                MathValue::Array(list) => MathValue::Array(
                    list.iter()
                        .map(&mut filled)
                        .collect::<Result<_, MathError>>()?,
                ),
                scalar => scalar,
            })
        }
        other => Err(MathError(format!("Unknown function {other}."))),
    }
}

enum Fill {
    Value(f64),
    Repeat,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluate(source: &str, ctx: &mut dyn MathContext) -> Result<MathValue, MathError> {
        parse(source)?.evaluate(ctx)
    }

    fn references(source: &str) -> Result<Vec<String>, MathError> {
        Ok(parse(source)?.references())
    }

    struct Ctx(BTreeMap<String, Series>);

    impl MathContext for Ctx {
        fn resolve(&mut self, id: &str) -> Result<Option<MathValue>, MathError> {
            Ok(self.0.get(id).cloned().map(MathValue::Series))
        }
        fn metrics(&mut self) -> Result<Vec<Series>, MathError> {
            Ok(self.0.values().cloned().collect())
        }
        fn grid(&self) -> Vec<i64> {
            vec![0, 60, 120]
        }
        fn charge(&mut self, _points: usize) -> Result<(), MathError> {
            Ok(())
        }
    }

    fn series(label: &str, points: &[(i64, f64)]) -> Series {
        Series {
            label: label.into(),
            points: points.iter().copied().collect(),
        }
    }

    fn ctx() -> Ctx {
        Ctx(BTreeMap::from([
            (
                "m1".to_string(),
                series("cpu", &[(0, 1.0), (60, 2.0), (120, 3.0)]),
            ),
            ("m2".to_string(), series("mem", &[(0, 10.0), (60, 20.0)])),
        ]))
    }

    fn points(v: MathValue) -> Vec<(i64, f64)> {
        match v {
            MathValue::Series(s) => s.points.into_iter().collect(),
            other => panic!("not a series: {other:?}"),
        }
    }

    #[test]
    fn arithmetic_between_series_and_scalars() {
        assert_eq!(
            points(evaluate("m1 + m2", &mut ctx()).unwrap()),
            vec![(0, 11.0), (60, 22.0)]
        );
        assert_eq!(
            points(evaluate("m1 * 100 / 2", &mut ctx()).unwrap()),
            vec![(0, 50.0), (60, 100.0), (120, 150.0)]
        );
        assert_eq!(
            points(evaluate("-(m1 - 4)", &mut ctx()).unwrap()),
            vec![(0, 3.0), (60, 2.0), (120, 1.0)]
        );
        assert_eq!(
            evaluate("1 + 2 * 3", &mut ctx()).unwrap(),
            MathValue::Scalar(7.0)
        );
        assert_eq!(
            points(evaluate("m1 / (m1 - 1)", &mut ctx()).unwrap()),
            vec![(60, 2.0), (120, 1.5)]
        );
    }

    #[test]
    fn aggregates_over_arrays_and_over_time() {
        assert_eq!(
            points(evaluate("SUM(METRICS())", &mut ctx()).unwrap()),
            vec![(0, 11.0), (60, 22.0), (120, 3.0)]
        );
        assert_eq!(
            points(evaluate("MAX([m1, m2])", &mut ctx()).unwrap()),
            vec![(0, 10.0), (60, 20.0), (120, 3.0)]
        );
        assert_eq!(
            evaluate("AVG(m1)", &mut ctx()).unwrap(),
            MathValue::Scalar(2.0)
        );
        assert_eq!(
            evaluate("MIN(m2)", &mut ctx()).unwrap(),
            MathValue::Scalar(10.0)
        );
        match evaluate("METRICS('me')", &mut ctx()).unwrap() {
            MathValue::Array(list) => assert_eq!(list.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fill_and_elementwise_functions() {
        assert_eq!(
            points(evaluate("FILL(m2, 0)", &mut ctx()).unwrap()),
            vec![(0, 10.0), (60, 20.0), (120, 0.0)]
        );
        assert_eq!(
            points(evaluate("FILL(m2, REPEAT)", &mut ctx()).unwrap()),
            vec![(0, 10.0), (60, 20.0), (120, 20.0)]
        );
        assert_eq!(
            points(evaluate("ABS(0 - m1)", &mut ctx()).unwrap()),
            vec![(0, 1.0), (60, 2.0), (120, 3.0)]
        );
    }

    #[test]
    fn errors_are_reported() {
        assert!(evaluate("m1 +", &mut ctx()).is_err());
        assert!(evaluate("nope * 2", &mut ctx()).is_err());
        assert!(evaluate("FOO(m1)", &mut ctx()).is_err());
        assert!(evaluate("m1 $ 2", &mut ctx()).is_err());
        assert!(evaluate(&"(".repeat(1000), &mut ctx()).is_err());
        assert!(evaluate("METRICS() + METRICS()", &mut ctx()).is_err());
    }

    #[test]
    fn long_operator_chains_do_not_recurse() {
        // 10,000 terms: flat, so no stack depth however long.
        let sum = format!("m1{}", " + 0".repeat(10_000));
        assert_eq!(
            points(evaluate(&sum, &mut ctx()).unwrap()),
            vec![(0, 1.0), (60, 2.0), (120, 3.0)]
        );
        let product = format!("m1{}", " * 1 / 1".repeat(5_000));
        assert_eq!(points(evaluate(&product, &mut ctx()).unwrap()).len(), 3);
        // Sign chains collapse: an odd count negates.
        let odd = format!("{}m1", "-".repeat(100_001));
        assert_eq!(
            points(evaluate(&odd, &mut ctx()).unwrap()),
            vec![(0, -1.0), (60, -2.0), (120, -3.0)]
        );
        let even = format!("{}m1", "- +".repeat(100_000));
        assert_eq!(points(evaluate(&even, &mut ctx()).unwrap())[0], (0, 1.0));
        assert_eq!(
            references(&format!("m1{}", " + m2".repeat(3))).unwrap(),
            vec!["m1", "m2", "m2", "m2"]
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let nested =
            |open: &str, close: &str, n: usize| format!("{}m1{}", open.repeat(n), close.repeat(n));
        for (open, close) in [
            ("(", ")"),
            ("ABS(", ")"),
            ("[", "]"),
            ("-(", ")"),
            ("FILL(", ", 0)"),
        ] {
            let deepest = nested(open, close, MAX_NESTING - 1);
            let parsed = parse(&deepest).unwrap_or_else(|e| panic!("{deepest}: {e}"));
            assert_eq!(parsed.nesting(), MAX_NESTING);
            let err = parse(&nested(open, close, MAX_NESTING)).unwrap_err();
            assert_eq!(err.0, "Expression is nested too deeply.");
            // Unbalanced and huge: refused without recursing 100,000 deep.
            assert!(parse(&open.repeat(100_000)).is_err());
        }
        assert_eq!(parse("m1 + m2").unwrap().nesting(), 1);
        assert_eq!(parse("SUM([m1, (m2)])").unwrap().nesting(), 4);
    }

    #[test]
    fn the_deepest_expression_evaluates_on_a_small_stack() {
        // Debug builds use far more stack per frame than release ones; 1 MiB (half a tokio
        // worker's stack) must be plenty for the deepest expression the parser accepts.
        let levels = (MAX_NESTING - 1) / 3;
        let deepest = format!(
            "{}m1{}",
            "FILL(ABS(-[".repeat(levels),
            "]), 0)".repeat(levels)
        );
        assert_eq!(parse(&deepest).unwrap().nesting(), 3 * levels + 1);
        let handle = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || evaluate(&deepest, &mut ctx()).map(|v| matches!(v, MathValue::Array(_))))
            .unwrap();
        assert_eq!(handle.join().unwrap(), Ok(true));
    }

    #[test]
    fn references_are_listed() {
        assert_eq!(
            references("SUM([m1, e2]) / FILL(m3, REPEAT)").unwrap(),
            vec!["m1", "e2", "m3"]
        );
    }
}
