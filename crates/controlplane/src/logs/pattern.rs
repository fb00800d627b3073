//! CloudWatch Logs filter patterns (the `filterPattern` of FilterLogEvents): parsed once per
//! request, then matched against every candidate message.
//!
//! Supported, following AWS's "Filter pattern syntax" guide:
//! - the empty pattern (everything matches);
//! - unstructured terms: `ERROR Exception` (all must appear, case-sensitive substrings),
//!   `"exact phrase"`, `?ERROR ?WARN` (any of), `-DEBUG` (must not appear), and term groups
//!   `?ERROR MainThread ?WARN Deadlock` ((ERROR and MainThread) or (WARN and Deadlock));
//! - a standalone regular expression `%…%`;
//! - JSON patterns `{ $.a.b[0] = "x*" && ($.n > 5 || $.ok IS TRUE) }` with `=`, `!=`, `<`,
//!   `<=`, `>`, `>=`, string wildcards `*`, regex values `%…%`, `IS NULL`, `IS TRUE`,
//!   `IS FALSE`, `NOT EXISTS`, `&&`, `||` and parentheses;
//! - space-delimited patterns `[ip, user, ..., status = 4*, bytes > 1000]`, where a message's
//!   fields are split on spaces and `"…"` / `[…]` group a field; `...` at most once.
//!
//! AWS's own messages for bad patterns are mostly "Invalid filter pattern"; the few more
//! specific ones it is known to send are reproduced.

use regex::Regex;

/// Why a pattern was refused; the text goes to the client as an InvalidParameterException.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(pub String);

fn invalid() -> PatternError {
    PatternError("Invalid filter pattern".to_string())
}

#[derive(Debug, Clone)]
pub enum FilterPattern {
    All,
    /// Unstructured terms: the event matches when every term of at least one group appears
    /// (no groups: any event) and no `none` term does.
    Terms {
        groups: Vec<Vec<String>>,
        none: Vec<String>,
    },
    Regex(Regex),
    Json(JsonExpr),
    Delimited(Vec<Field>),
}

impl FilterPattern {
    pub fn parse(pattern: &str) -> Result<FilterPattern, PatternError> {
        let text = pattern.trim();
        if text.is_empty() {
            return Ok(FilterPattern::All);
        }
        if text.starts_with('{') {
            let Some(body) = text.strip_suffix('}') else {
                return Err(PatternError(
                    "If a filter pattern starts with '{' it must end with '}'".to_string(),
                ));
            };
            let tokens = lex(&body[1..])?;
            let mut parser = JsonParser { tokens, pos: 0 };
            let expr = parser.or()?;
            if parser.pos != parser.tokens.len() {
                return Err(invalid());
            }
            return Ok(FilterPattern::Json(expr));
        }
        if text.starts_with('[') {
            let Some(body) = text.strip_suffix(']') else {
                // guessed: mirrors AWS's message for '{'
                return Err(PatternError(
                    "If a filter pattern starts with '[' it must end with ']'".to_string(),
                ));
            };
            return parse_delimited(&body[1..]).map(FilterPattern::Delimited);
        }
        if text.len() >= 2 && text.starts_with('%') && text.ends_with('%') {
            return regex_value(&text[1..text.len() - 1]).map(FilterPattern::Regex);
        }
        parse_terms(text)
    }

    pub fn matches(&self, message: &str) -> bool {
        match self {
            FilterPattern::All => true,
            FilterPattern::Terms { groups, none } => {
                !none.iter().any(|t| message.contains(t.as_str()))
                    && (groups.is_empty()
                        || groups
                            .iter()
                            .any(|g| g.iter().all(|t| message.contains(t.as_str()))))
            }
            FilterPattern::Regex(re) => re.is_match(message),
            FilterPattern::Json(expr) => match serde_json::from_str::<serde_json::Value>(message) {
                Ok(doc) => expr.eval(&doc),
                Err(_) => false,
            },
            FilterPattern::Delimited(fields) => match_fields(fields, &split_fields(message)),
        }
    }
}

/// Compile a `%…%` body with the characters AWS allows in filter-pattern regexes.
fn regex_value(body: &str) -> Result<Regex, PatternError> {
    const SYMBOLS: &str = "_#=@/;,-: ^$?[]{}|\\*+.";
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || SYMBOLS.contains(c))
    {
        return Err(invalid());
    }
    Regex::new(body).map_err(|_| invalid())
}

// ---- unstructured terms ----

/// AWS's term groups (what the CDK's `anyTermGroup` renders): each `?` term opens a new group
/// and the plain terms after it join that group, so `?ERROR MainThread ?WARN Deadlock` is
/// (ERROR and MainThread) or (WARN and Deadlock). Plain terms before the first `?` form a group
/// of their own (guessed: AWS documents only patterns that start with `?` or have none).
/// `-` terms exclude an event whatever group they sit in.
fn parse_terms(text: &str) -> Result<FilterPattern, PatternError> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut none = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let token_start = i;
        let kind = chars[i];
        if kind == '?' || kind == '-' {
            i += 1;
        }
        let term = if chars.get(i) == Some(&'"') {
            let (phrase, next) = quoted(&chars, i)?;
            i = next;
            phrase
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            const SYNTAX: &str = "\"{}[]()%?*!&|<>\\'";
            if word.is_empty() || word.chars().any(|c| SYNTAX.contains(c)) {
                let shown: String = chars[token_start..i].iter().collect();
                return Err(PatternError(format!(
                    "Invalid character(s) in term '{shown}'"
                )));
            }
            word
        };
        match kind {
            '?' => groups.push(vec![term]),
            '-' => none.push(term),
            _ => match groups.last_mut() {
                Some(group) => group.push(term),
                None => groups.push(vec![term]),
            },
        }
    }
    Ok(FilterPattern::Terms { groups, none })
}

/// A `"…"` string starting at `chars[start]`, with `\"` and `\\` escapes; returns the text and
/// the index after the closing quote.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), PatternError> {
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                out.push(chars[i + 1]);
                i += 2;
            }
            '"' => return Ok((out, i + 1)),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(invalid())
}

/// `*` matches any run of characters; everything else literally.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

// ---- values shared by JSON and delimited patterns ----

#[derive(Debug, Clone)]
pub enum Value {
    Number(f64),
    /// Quoted or bare text, `*` wildcards allowed.
    Text(String),
    Regex(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn numeric(self, a: f64, b: f64) -> bool {
        match self {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }
}

/// Compare one field's text (a JSON scalar or a delimited field) with a condition.
fn compare_text(field: &str, field_number: Option<f64>, op: Op, value: &Value) -> bool {
    match value {
        Value::Number(n) => match field_number.or_else(|| field.trim().parse::<f64>().ok()) {
            Some(f) => op.numeric(f, *n),
            None => false,
        },
        Value::Text(pattern) => match op {
            Op::Eq => wildcard_match(pattern, field),
            Op::Ne => !wildcard_match(pattern, field),
            _ => false,
        },
        Value::Regex(re) => match op {
            Op::Eq => re.is_match(field),
            Op::Ne => !re.is_match(field),
            _ => false,
        },
    }
}

// ---- JSON patterns ----

#[derive(Debug, Clone)]
pub enum JsonExpr {
    And(Box<JsonExpr>, Box<JsonExpr>),
    Or(Box<JsonExpr>, Box<JsonExpr>),
    Compare(Selector, Op, Value),
    IsNull(Selector),
    IsBool(Selector, bool),
    NotExists(Selector),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Selector(pub Vec<Step>);

impl Selector {
    fn resolve<'a>(&self, doc: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        let mut at = doc;
        for step in &self.0 {
            at = match step {
                Step::Key(k) => at.as_object()?.get(k)?,
                Step::Index(i) => at.as_array()?.get(*i)?,
            };
        }
        Some(at)
    }
}

impl JsonExpr {
    fn eval(&self, doc: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match self {
            JsonExpr::And(a, b) => a.eval(doc) && b.eval(doc),
            JsonExpr::Or(a, b) => a.eval(doc) || b.eval(doc),
            JsonExpr::IsNull(sel) => matches!(sel.resolve(doc), Some(J::Null)),
            JsonExpr::IsBool(sel, want) => sel.resolve(doc) == Some(&J::Bool(*want)),
            JsonExpr::NotExists(sel) => sel.resolve(doc).is_none(),
            JsonExpr::Compare(sel, op, value) => match sel.resolve(doc) {
                Some(J::String(s)) => compare_text(s, None, *op, value),
                Some(J::Number(n)) => compare_text(&n.to_string(), n.as_f64(), *op, value),
                Some(J::Bool(b)) => {
                    // Booleans compare as text only, never as numbers.
                    !matches!(value, Value::Number(_))
                        && compare_text(if *b { "true" } else { "false" }, None, *op, value)
                }
                _ => false,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Selector(Selector),
    Op(Op),
    And,
    Or,
    Open,
    Close,
    Str(String),
    Regex(String),
    Word(String),
}

fn lex(text: &str) -> Result<Vec<Token>, PatternError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '&' if next == Some('&') => {
                tokens.push(Token::And);
                i += 2;
            }
            '|' if next == Some('|') => {
                tokens.push(Token::Or);
                i += 2;
            }
            '=' => {
                tokens.push(Token::Op(Op::Eq));
                i += 1;
            }
            '!' if next == Some('=') => {
                tokens.push(Token::Op(Op::Ne));
                i += 2;
            }
            '<' | '>' => {
                let eq = next == Some('=');
                tokens.push(Token::Op(match (c, eq) {
                    ('<', true) => Op::Le,
                    ('<', false) => Op::Lt,
                    (_, true) => Op::Ge,
                    (_, false) => Op::Gt,
                }));
                i += if eq { 2 } else { 1 };
            }
            '"' => {
                let (s, after) = quoted(&chars, i)?;
                tokens.push(Token::Str(s));
                i = after;
            }
            '%' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '%')
                    .ok_or_else(invalid)?;
                tokens.push(Token::Regex(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '$' => {
                let (selector, after) = lex_selector(&chars, i)?;
                tokens.push(Token::Selector(selector));
                i = after;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"()=!<>&|\"".contains(chars[i])
                {
                    i += 1;
                }
                if i == start {
                    return Err(invalid());
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(tokens)
}

/// `$` followed by `.key` and `[n]` steps.
fn lex_selector(chars: &[char], start: usize) -> Result<(Selector, usize), PatternError> {
    let mut steps = Vec::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            Some('.') => {
                let key_start = i + 1;
                i = key_start;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !".[]()=!<>&|\"".contains(chars[i])
                {
                    i += 1;
                }
                if i == key_start {
                    return Err(invalid());
                }
                steps.push(Step::Key(chars[key_start..i].iter().collect()));
            }
            Some('[') => {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or_else(invalid)?;
                let index: String = chars[i + 1..i + close].iter().collect();
                let index = index.trim().parse::<usize>().map_err(|_| invalid())?;
                steps.push(Step::Index(index));
                i += close + 1;
            }
            _ => break,
        }
    }
    if steps.is_empty() {
        return Err(invalid());
    }
    Ok((Selector(steps), i))
}

struct JsonParser {
    tokens: Vec<Token>,
    pos: usize,
}

impl JsonParser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn or(&mut self) -> Result<JsonExpr, PatternError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = JsonExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<JsonExpr, PatternError> {
        let mut left = self.primary()?;
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            let right = self.primary()?;
            left = JsonExpr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<JsonExpr, PatternError> {
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err(invalid()),
                }
            }
            Some(Token::Selector(sel)) => self.condition(sel),
            _ => Err(invalid()),
        }
    }

    fn condition(&mut self, sel: Selector) -> Result<JsonExpr, PatternError> {
        match self.next() {
            Some(Token::Op(op)) => {
                let value = match self.next() {
                    Some(Token::Str(s)) => Value::Text(s),
                    Some(Token::Regex(r)) => Value::Regex(regex_value(&r)?),
                    Some(Token::Word(w)) => word_value(&w),
                    _ => return Err(invalid()),
                };
                if !matches!(op, Op::Eq | Op::Ne) && !matches!(value, Value::Number(_)) {
                    return Err(invalid());
                }
                Ok(JsonExpr::Compare(sel, op, value))
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("IS") => match self.next() {
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("NULL") => Ok(JsonExpr::IsNull(sel)),
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("TRUE") => {
                    Ok(JsonExpr::IsBool(sel, true))
                }
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("FALSE") => {
                    Ok(JsonExpr::IsBool(sel, false))
                }
                _ => Err(invalid()),
            },
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("NOT") => match self.next() {
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("EXISTS") => {
                    Ok(JsonExpr::NotExists(sel))
                }
                _ => Err(invalid()),
            },
            _ => Err(invalid()),
        }
    }
}

/// A bare value: a number when it reads as one, text (with wildcards) otherwise.
fn word_value(word: &str) -> Value {
    match word.parse::<f64>() {
        Ok(n) if n.is_finite() => Value::Number(n),
        _ => Value::Text(word.to_string()),
    }
}

// ---- space-delimited patterns ----

#[derive(Debug, Clone)]
pub enum Field {
    /// `...`: any number of fields.
    Ellipsis,
    /// A named or unnamed field, matched when every `all` condition holds and, if any `any`
    /// conditions exist, one of them holds.
    Slot {
        name: Option<String>,
        conditions: Vec<Vec<(Op, Value)>>,
    },
}

fn parse_delimited(body: &str) -> Result<Vec<Field>, PatternError> {
    // Split on commas outside quotes.
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut in_quote = false;
    let mut escaped = false;
    for c in body.chars() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => {
                current.push(c);
                escaped = true;
            }
            '"' => {
                in_quote = !in_quote;
                current.push(c);
            }
            ',' if !in_quote => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if in_quote {
        return Err(invalid());
    }
    parts.push(current);
    let mut fields = Vec::new();
    for part in parts {
        let part = part.trim();
        if part == "..." {
            // AWS allows one `...`; more would also make matching a search over every way of
            // splitting the words between them.
            if fields.iter().any(|f| matches!(f, Field::Ellipsis)) {
                return Err(invalid());
            }
            fields.push(Field::Ellipsis);
            continue;
        }
        fields.push(parse_slot(part)?);
    }
    Ok(fields)
}

/// `name`, `name = v`, `name != v && name != w`, `name = v || name = w`, `= v`.
fn parse_slot(text: &str) -> Result<Field, PatternError> {
    let tokens = lex(text)?;
    let mut pos = 0;
    let mut name: Option<String> = None;
    // Alternatives (||) of conjunctions (&&).
    let mut alternatives: Vec<Vec<(Op, Value)>> = vec![Vec::new()];
    loop {
        if let Some(Token::Word(w)) = tokens.get(pos) {
            // AWS's column names: ^[a-zA-Z0-9_-]+$ (leading digits and hyphens included).
            let valid_name = w
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name || name.as_deref().is_some_and(|n| n != w) {
                return Err(invalid());
            }
            name = Some(w.clone());
            pos += 1;
        }
        match tokens.get(pos) {
            None if pos == tokens.len() && pos > 0 => break,
            Some(Token::Op(op)) => {
                let op = *op;
                let value = match tokens.get(pos + 1) {
                    Some(Token::Str(s)) => Value::Text(s.clone()),
                    Some(Token::Regex(r)) => Value::Regex(regex_value(r)?),
                    Some(Token::Word(w)) => word_value(w),
                    _ => return Err(invalid()),
                };
                if !matches!(op, Op::Eq | Op::Ne) && !matches!(value, Value::Number(_)) {
                    return Err(invalid());
                }
                if let Some(last) = alternatives.last_mut() {
                    last.push((op, value));
                }
                pos += 2;
            }
            _ => return Err(invalid()),
        }
        match tokens.get(pos) {
            None => break,
            Some(Token::And) => pos += 1,
            Some(Token::Or) => {
                alternatives.push(Vec::new());
                pos += 1;
            }
            _ => return Err(invalid()),
        }
    }
    if alternatives.iter().any(|a| a.is_empty()) && alternatives.len() > 1 {
        return Err(invalid());
    }
    let conditions = if alternatives.len() == 1 && alternatives[0].is_empty() {
        Vec::new()
    } else {
        alternatives
    };
    Ok(Field::Slot { name, conditions })
}

/// Split a message into fields: runs of non-space characters, where `"…"` and `[…]` keep
/// their spaces and lose their delimiters.
fn split_fields(message: &str) -> Vec<&str> {
    let bytes = message.as_bytes();
    let mut fields = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let close = match bytes[i] {
            b'"' => Some(b'"'),
            b'[' => Some(b']'),
            _ => None,
        };
        if let Some(close) = close {
            if let Some(end) = bytes[i + 1..].iter().position(|&b| b == close) {
                fields.push(&message[i + 1..i + 1 + end]);
                i += end + 2;
                continue;
            }
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(&message[start..i]);
    }
    fields
}

fn slot_matches(conditions: &[Vec<(Op, Value)>], word: &str) -> bool {
    conditions.is_empty()
        || conditions.iter().any(|all| {
            all.iter()
                .all(|(op, value)| compare_text(word, None, *op, value))
        })
}

/// Match fields against words without backtracking: the parser allows at most one `...`, so
/// the slots before it take the first words, the slots after it the last words, and `...` the
/// rest. The work per event is one comparison per slot, whatever the pattern.
fn match_fields(fields: &[Field], words: &[&str]) -> bool {
    let slots = |fields: &[Field], words: &[&str]| {
        fields.iter().zip(words).all(|(field, word)| match field {
            Field::Slot { conditions, .. } => slot_matches(conditions, word),
            // Unreachable with one ellipsis; refusing keeps a bad parse from matching.
            Field::Ellipsis => false,
        })
    };
    match fields.iter().position(|f| matches!(f, Field::Ellipsis)) {
        None => fields.len() == words.len() && slots(fields, words),
        Some(at) => {
            let (head, tail) = (&fields[..at], &fields[at + 1..]);
            words.len() >= head.len() + tail.len()
                && slots(head, &words[..head.len()])
                && slots(tail, &words[words.len() - tail.len()..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, message: &str) -> bool {
        FilterPattern::parse(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .matches(message)
    }

    fn refused(pattern: &str) -> String {
        FilterPattern::parse(pattern)
            .err()
            .unwrap_or_else(|| panic!("{pattern} was accepted"))
            .0
    }

    #[test]
    fn empty_pattern_matches_everything() {
        assert!(m("", "anything"));
        assert!(m("   ", ""));
    }

    #[test]
    fn terms_are_case_sensitive_and_all_required() {
        assert!(m("ERROR", "[ERROR] disk full"));
        assert!(!m("ERROR", "[error] disk full"));
        assert!(m("ERROR disk", "[ERROR] disk full"));
        assert!(!m("ERROR memory", "[ERROR] disk full"));
        assert!(m("\"disk full\"", "[ERROR] disk full"));
        assert!(!m("\"full disk\"", "[ERROR] disk full"));
    }

    #[test]
    fn optional_and_excluded_terms() {
        assert!(m("?ERROR ?WARN", "WARN low memory"));
        assert!(!m("?ERROR ?WARN", "INFO ok"));
        assert!(m("ERROR -timeout", "ERROR disk"));
        assert!(!m("ERROR -timeout", "ERROR timeout"));
        assert!(!m("-\"disk full\"", "ERROR disk full"));
        assert!(m("?\"disk full\" ?oops", "ERROR disk full"));
    }

    #[test]
    fn question_marks_start_term_groups() {
        // AWS (and the CDK's anyTermGroup): (ERROR and MainThread) or (WARN and Deadlock).
        let p = r#"?"ERROR" "MainThread" ?"WARN" "Deadlock""#;
        // The cases that tell this reading from "all plain terms, and any `?` term": there,
        // these two would fail for lacking Deadlock and MainThread respectively.
        assert!(m(p, "ERROR in MainThread"));
        assert!(m(p, "WARN Deadlock detected"));
        // Neither reading matches a term from each group without its partner.
        assert!(!m(p, "ERROR Deadlock"));
        assert!(!m(p, "WARN in MainThread"));
        assert!(!m(p, "MainThread Deadlock"));
        assert!(m(p, "ERROR MainThread Deadlock"));
        // Exclusions still apply to every group, wherever they are written.
        let q = "?ERROR MainThread -DEBUG ?WARN Deadlock";
        assert!(m(q, "WARN Deadlock"));
        assert!(!m(q, "WARN Deadlock DEBUG"));
        assert!(!m(q, "DEBUG ERROR MainThread"));
        // Plain terms before the first `?` are a group of their own.
        assert!(m("fatal ?WARN Deadlock", "fatal"));
        assert!(m("fatal ?WARN Deadlock", "WARN Deadlock"));
        assert!(!m("fatal ?WARN Deadlock", "WARN"));
        // Only exclusions: everything else matches.
        assert!(m("-DEBUG", "INFO"));
        assert!(!m("-DEBUG", "DEBUG x"));
    }

    #[test]
    fn bad_terms_are_refused() {
        assert_eq!(refused("a?b"), "Invalid character(s) in term 'a?b'");
        assert_eq!(refused("?"), "Invalid character(s) in term '?'");
        assert_eq!(refused("\"unterminated"), "Invalid filter pattern");
    }

    #[test]
    fn regex_patterns() {
        assert!(m("%ERROR [0-9]+%", "ERROR 404 x"));
        assert!(!m("%^ERROR%", "x ERROR"));
        assert!(m("%colou?r%", "the color"));
        assert_eq!(refused("%some(thing)%"), "Invalid filter pattern");
        assert_eq!(refused("%bang!%"), "Invalid filter pattern");
    }

    #[test]
    fn json_equality_wildcards_and_numbers() {
        let doc = r#"{"eventType":"UpdateTrail","ip":"123.123.4.5","n":7,"f":1.5,
                      "user":{"id":1,"name":"ann"},"users":[{"email":"a@x"},{"email":"b@y"}],
                      "ok":true,"gone":null}"#;
        assert!(m(r#"{ $.eventType = "UpdateTrail" }"#, doc));
        assert!(m("{ $.eventType = UpdateTrail }", doc));
        assert!(m("{$.eventType=Update*}", doc));
        assert!(!m(r#"{ $.eventType = "updatetrail" }"#, doc));
        assert!(m("{ $.ip != 10.0.* }", doc));
        assert!(!m("{ $.ip != 123.123.* }", doc));
        assert!(m("{ $.n > 5 }", doc));
        assert!(m("{ $.n >= 7 && $.n <= 7 }", doc));
        assert!(!m("{ $.n < 7 }", doc));
        assert!(m("{ $.n = 7 }", doc));
        assert!(m("{ $.f = 1.5 }", doc));
        assert!(m("{ $.user.id = 1 }", doc));
        assert!(m(r#"{ $.users[1].email = "b@y" }"#, doc));
        assert!(!m(r#"{ $.users[2].email = "b@y" }"#, doc));
        assert!(m("{ $.user.name = %^an+%  }", doc));
        // A missing field satisfies no comparison, not even !=.
        assert!(!m("{ $.missing != 3 }", doc));
    }

    #[test]
    fn json_boolean_logic_and_special_forms() {
        let doc = r#"{"a":1,"b":"x","ok":true,"no":false,"gone":null}"#;
        assert!(m("{ $.a = 1 && $.b = x }", doc));
        assert!(m("{ $.a = 2 || $.b = x }", doc));
        assert!(!m("{ $.a = 2 || $.b = y }", doc));
        assert!(m("{ ($.a = 2 || $.b = x) && $.ok IS TRUE }", doc));
        assert!(m("{ $.no IS FALSE }", doc));
        assert!(m("{ $.gone IS NULL }", doc));
        assert!(!m("{ $.a IS NULL }", doc));
        assert!(m("{ $.nothing NOT EXISTS }", doc));
        assert!(!m("{ $.a NOT EXISTS }", doc));
        // Not JSON: never matches a JSON pattern.
        assert!(!m("{ $.a = 1 }", "plain text a=1"));
    }

    #[test]
    fn bad_json_patterns_are_refused() {
        assert_eq!(
            refused("{ $.a = 1"),
            "If a filter pattern starts with '{' it must end with '}'"
        );
        for bad in [
            "{ }",
            "{ $.a }",
            "{ $.a = }",
            "{ a = 1 }",
            "{ $.a > abc }",
            "{ ($.a = 1 }",
            "{ $.a = 1 && }",
            "{ $.a IS MAYBE }",
            "{ $.a[x] = 1 }",
        ] {
            assert_eq!(refused(bad), "Invalid filter pattern", "{bad}");
        }
    }

    #[test]
    fn space_delimited_patterns() {
        let line = r#"127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 404 2326"#;
        let all = "[ip, dash, user, timestamp, request, status, bytes]";
        assert!(m(all, line));
        assert!(m(
            "[ip, dash, user, timestamp, request, status = 404, bytes > 1000]",
            line
        ));
        assert!(!m(
            "[ip, dash, user, timestamp, request, status = 200, bytes]",
            line
        ));
        assert!(m("[..., status = 4*, bytes]", line));
        assert!(m("[ip = 127.0.0.*, ...]", line));
        assert!(m(r#"[..., request = "GET *", status, bytes]"#, line));
        assert!(m("[..., status = 500 || status = 404, bytes]", line));
        assert!(m("[..., status != 200 && status != 500, bytes]", line));
        assert!(!m("[ip, user]", line));
        assert!(!m("[..., bytes < 100]", line));
        assert_eq!(
            refused("[ip, user"),
            "If a filter pattern starts with '[' it must end with ']'"
        );
        assert_eq!(refused("[ip, , user]"), "Invalid filter pattern");
        assert_eq!(refused("[a = 1 && b = 2]"), "Invalid filter pattern");
    }

    #[test]
    fn at_most_one_ellipsis_and_linear_matching() {
        for bad in ["[..., a, ...]", "[..., ...]", "[a, ..., b, ..., c, ..., d]"] {
            assert_eq!(refused(bad), "Invalid filter pattern", "{bad}");
        }
        // The shape that used to take exponential time, now with the one `...` AWS allows,
        // over a long message whose last field fails the condition: nothing to backtrack.
        let words: Vec<String> = (0..10_000).map(|i| format!("w{i}")).collect();
        let message = words.join(" ");
        let started = std::time::Instant::now();
        let p = FilterPattern::parse("[a, b, ..., c, d = nope]").unwrap();
        for _ in 0..100 {
            assert!(!p.matches(&message));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(m("[a = w0, b, ..., c = w9998, d = w9999]", &message));
        assert!(m("[a, ..., b]", "x y"));
        assert!(!m("[a, ..., b, c]", "x y"));
        assert!(m("[..., a]", "x"));
        assert!(m("[...]", ""));
        assert!(m("[a, b, ...]", "x y"));
        assert!(!m("[a = y, ...]", "x y"));
    }

    #[test]
    fn column_names_follow_aws() {
        // ^[a-zA-Z0-9_-]+$: hyphens and leading digits are fine.
        assert!(m("[remote-addr, 1st, status_code = 404]", "1.2.3.4 x 404"));
        assert!(m("[a-b = x* && a-b != xz, ...]", "xy 2"));
        assert!(!m("[a-b = x* && a-b != xy, ...]", "xy 2"));
        assert!(m("[2xx, ...]", "200"));
        for bad in ["[a.b]", "[a/b]", "[a b]", "[a = 1 && b = 2]"] {
            assert_eq!(refused(bad), "Invalid filter pattern", "{bad}");
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*c", "abbc"));
        assert!(wildcard_match("a*b*c", "a-b-c"));
        assert!(!wildcard_match("a*c", "ab"));
        assert!(!wildcard_match("aa*aa", "aaa"));
        assert!(wildcard_match("x", "x"));
    }
}
