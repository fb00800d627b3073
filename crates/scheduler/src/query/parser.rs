//! A recursive-descent parser for the cluster query language.
//!
//! Hand-written rather than built on `nom`/`pest`: the grammar is a dozen lines, but its lexing is
//! context-dependent (`!` is "not" before an expression and part of `!=`/`!exists`/`!in`/`!~`
//! after a subject; a bare `=~` argument may contain balanced parentheses such as `(t2|m5).*`
//! that must not close a group), which is simplest to get right with the cursor in hand. It also
//! keeps error positions exact and the crate free of parser dependencies.
//!
//! Grammar (keywords case-insensitive, whitespace between tokens):
//! ```text
//! or        := and (("or" | "||") and)*
//! and       := unary (("and" | "&&") unary)*
//! unary     := ("not" | "!") unary | "(" or ")" | condition
//! condition := subject operator argument?
//! subject   := "attribute:" NAME | "task:group" | "agentConnected" | "agentVersion"
//!            | "ec2InstanceId" | "registeredAt" | "runningTasksCount"
//! argument  := value | ("[" | "(") value ("," value)* ("]" | ")")
//! value     := 'quoted' | "quoted" | bare          (bare: up to whitespace, balanced parens)
//! ```

use super::compare::{parse_timestamp, Comparable};
use super::{Argument, Condition, Expression, Operator, Subject, MAX_EXPRESSION_LENGTH};

/// Why an expression was refused. Messages go on the wire inside an `InvalidParameterException`,
/// so they are written as AWS writes messages (capitalised, with a period). AWS does not publish
/// its parser's messages: the wording here is ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    #[error("The expression is empty.")]
    Empty,
    #[error("The expression is {length} characters long; the maximum is {MAX_EXPRESSION_LENGTH}.")]
    TooLong { length: usize },
    #[error(
        "The expression '{expression}' is invalid: expected {expected} at position {position}."
    )]
    Expected {
        expression: String,
        expected: &'static str,
        position: usize,
    },
    #[error("The expression '{expression}' is invalid: unknown subject '{subject}'. Valid subjects are attribute:<name>, agentConnected, agentVersion, ec2InstanceId, registeredAt, runningTasksCount and task:group.")]
    UnknownSubject { expression: String, subject: String },
    #[error("The expression '{expression}' is invalid: unknown operator '{operator}' at position {position}.")]
    UnknownOperator {
        expression: String,
        operator: String,
        position: usize,
    },
    #[error("The expression '{expression}' is invalid: operator '{operator}' is not supported for {subject}.")]
    OperatorNotSupported {
        expression: String,
        subject: String,
        operator: &'static str,
    },
    #[error("The expression '{expression}' is invalid: '{argument}' is not a valid value for {subject}; {reason}.")]
    InvalidArgument {
        expression: String,
        subject: String,
        argument: String,
        reason: &'static str,
    },
    #[error(
        "The expression '{expression}' is invalid: '{pattern}' is not a valid regular expression."
    )]
    InvalidPattern { expression: String, pattern: String },
}

pub(super) fn parse(text: &str) -> Result<Expression, ExpressionError> {
    let length = text.chars().count();
    if length > MAX_EXPRESSION_LENGTH {
        return Err(ExpressionError::TooLong { length });
    }
    if text.trim().is_empty() {
        return Err(ExpressionError::Empty);
    }
    let mut parser = Parser { text, pos: 0 };
    let expression = parser.or()?;
    parser.skip_whitespace();
    if parser.pos < text.len() {
        return Err(parser.expected("'and', 'or' or the end of the expression"));
    }
    Ok(expression)
}

struct Parser<'a> {
    text: &'a str,
    /// Byte offset into `text`; always on a char boundary.
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_whitespace(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    /// Positions in messages count characters from 1, as a person reads them.
    fn position(&self) -> usize {
        self.text[..self.pos].chars().count() + 1
    }

    fn expected(&self, expected: &'static str) -> ExpressionError {
        ExpressionError::Expected {
            expression: self.text.to_owned(),
            expected,
            position: self.position(),
        }
    }

    /// Consumes `keyword` if it is next and is a whole word (not a prefix of a longer name).
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let rest = self.rest();
        let matches = rest
            .get(..keyword.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(keyword))
            && !rest[keyword.len()..]
                .chars()
                .next()
                .is_some_and(is_name_char);
        if matches {
            self.pos += keyword.len();
        }
        matches
    }

    fn eat(&mut self, symbol: &str) -> bool {
        if self.rest().starts_with(symbol) {
            self.pos += symbol.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expression, ExpressionError> {
        let mut left = self.and()?;
        loop {
            self.skip_whitespace();
            if self.eat("||") || self.eat_keyword("or") {
                let right = self.and()?;
                left = Expression::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn and(&mut self) -> Result<Expression, ExpressionError> {
        let mut left = self.unary()?;
        loop {
            self.skip_whitespace();
            if self.eat("&&") || self.eat_keyword("and") {
                let right = self.unary()?;
                left = Expression::And(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn unary(&mut self) -> Result<Expression, ExpressionError> {
        self.skip_whitespace();
        if self.eat_keyword("not") || self.eat("!") {
            return Ok(Expression::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            self.skip_whitespace();
            if !self.eat(")") {
                return Err(self.expected("')'"));
            }
            return Ok(inner);
        }
        self.condition().map(Expression::Condition)
    }

    fn condition(&mut self) -> Result<Condition, ExpressionError> {
        let subject = self.subject()?;
        self.skip_whitespace();
        let operator = self.operator()?;
        if !subject.valid_operators().contains(&operator) {
            return Err(ExpressionError::OperatorNotSupported {
                expression: self.text.to_owned(),
                subject: subject.to_string(),
                operator: operator.symbol(),
            });
        }
        let argument = match operator {
            Operator::Exists | Operator::NotExists => Argument::None,
            Operator::In | Operator::NotIn => {
                let list = self.list()?;
                self.typed_list(&subject, list)?
            }
            Operator::Matches | Operator::NotMatches => {
                let pattern = self.value()?;
                // Java's `String.matches` semantics: the whole value must match.
                let anchored = format!("^(?:{pattern})$");
                Argument::Pattern(regex::Regex::new(&anchored).map_err(|_| {
                    ExpressionError::InvalidPattern {
                        expression: self.text.to_owned(),
                        pattern,
                    }
                })?)
            }
            _ => {
                let value = self.value()?;
                self.typed_value(&subject, value)?
            }
        };
        Ok(Condition {
            subject,
            operator,
            argument,
        })
    }

    fn subject(&mut self) -> Result<Subject, ExpressionError> {
        let start = self.pos;
        let word_len = self
            .rest()
            .find(|c: char| !(is_name_char(c) || c == ':'))
            .unwrap_or(self.rest().len());
        if word_len == 0 {
            return Err(self.expected("a subject such as attribute:<name>"));
        }
        let word = &self.text[start..start + word_len];
        self.pos += word_len;
        let subject = match word {
            "agentConnected" => Subject::AgentConnected,
            "agentVersion" => Subject::AgentVersion,
            "ec2InstanceId" => Subject::Ec2InstanceId,
            "registeredAt" => Subject::RegisteredAt,
            "runningTasksCount" => Subject::RunningTasksCount,
            "task:group" => Subject::TaskGroup,
            _ => match word.strip_prefix("attribute:") {
                // Attribute names cannot contain ':' (letters, digits, - _ / \ . and @ only).
                Some(name) if !name.is_empty() && !name.contains(':') => {
                    Subject::Attribute(name.to_owned())
                }
                _ => {
                    return Err(ExpressionError::UnknownSubject {
                        expression: self.text.to_owned(),
                        subject: word.to_owned(),
                    })
                }
            },
        };
        Ok(subject)
    }

    fn operator(&mut self) -> Result<Operator, ExpressionError> {
        let start = self.pos;
        // Symbols, longest first so `>=` is not read as `>`.
        for (symbol, operator) in [
            ("==", Operator::Equals),
            ("!=", Operator::NotEquals),
            (">=", Operator::GreaterThanEqual),
            ("<=", Operator::LessThanEqual),
            ("=~", Operator::Matches),
            ("!~", Operator::NotMatches),
            (">", Operator::GreaterThan),
            ("<", Operator::LessThan),
        ] {
            if self.eat(symbol) {
                return Ok(operator);
            }
        }
        let negated = self.eat("!");
        let mut word_len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if word_len == 0 && !negated {
            // Not a word either (`=`, `<>`, …): report the whole symbol as the unknown operator.
            word_len = self
                .rest()
                .find(|c: char| c.is_whitespace() || c.is_ascii_alphanumeric() || c == '(')
                .unwrap_or(self.rest().len());
        }
        let word = self.rest()[..word_len].to_ascii_lowercase();
        self.pos += word_len;
        let operator = match (negated, word.as_str()) {
            (false, "equals") => Some(Operator::Equals),
            (false, "not_equals") => Some(Operator::NotEquals),
            (false, "greater_than") => Some(Operator::GreaterThan),
            (false, "greater_than_equal") => Some(Operator::GreaterThanEqual),
            (false, "less_than") => Some(Operator::LessThan),
            (false, "less_than_equal") => Some(Operator::LessThanEqual),
            (false, "exists") => Some(Operator::Exists),
            (true, "exists") | (false, "not_exists") => Some(Operator::NotExists),
            (false, "in") => Some(Operator::In),
            (true, "in") | (false, "not_in") => Some(Operator::NotIn),
            (false, "matches") => Some(Operator::Matches),
            (false, "not_matches") => Some(Operator::NotMatches),
            _ => None,
        };
        operator.ok_or_else(|| {
            let found = &self.text[start..self.pos];
            if found.is_empty() {
                self.pos = start;
                self.expected("an operator")
            } else {
                ExpressionError::UnknownOperator {
                    expression: self.text.to_owned(),
                    operator: found.to_owned(),
                    position: self.text[..start].chars().count() + 1,
                }
            }
        })
    }

    /// A single argument: quoted, or bare up to whitespace. A bare value may contain balanced
    /// parentheses (regular expressions); an unbalanced `)` ends it, closing an enclosing group.
    fn value(&mut self) -> Result<String, ExpressionError> {
        self.skip_whitespace();
        if let Some(quoted) = self.quoted()? {
            return Ok(quoted);
        }
        let mut depth = 0usize;
        let mut end = self.rest().len();
        for (offset, c) in self.rest().char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = offset;
                    break;
                }
                ')' => depth -= 1,
                c if c.is_whitespace() && depth == 0 => {
                    end = offset;
                    break;
                }
                _ => {}
            }
        }
        if end == 0 {
            return Err(self.expected("a value"));
        }
        let value = self.rest()[..end].to_owned();
        self.pos += end;
        Ok(value)
    }

    fn quoted(&mut self) -> Result<Option<String>, ExpressionError> {
        let Some(quote) = self.peek().filter(|c| *c == '\'' || *c == '"') else {
            return Ok(None);
        };
        let body = &self.rest()[1..];
        match body.find(quote) {
            Some(end) => {
                let value = body[..end].to_owned();
                self.pos += end + 2;
                Ok(Some(value))
            }
            None => {
                self.pos = self.text.len();
                Err(self.expected("a closing quote"))
            }
        }
    }

    /// `[a, b]` or `(a, b)`: AWS documents brackets; parentheses are accepted as well.
    fn list(&mut self) -> Result<Vec<String>, ExpressionError> {
        self.skip_whitespace();
        let close = if self.eat("[") {
            ']'
        } else if self.eat("(") {
            ')'
        } else {
            return Err(self.expected("an argument list such as [a, b]"));
        };
        let mut items = Vec::new();
        loop {
            self.skip_whitespace();
            let item = match self.quoted()? {
                Some(quoted) => quoted,
                None => {
                    let end = self
                        .rest()
                        .find(|c: char| c == ',' || c == close || c.is_whitespace())
                        .unwrap_or(self.rest().len());
                    if end == 0 {
                        return Err(self.expected("a list item"));
                    }
                    let item = self.rest()[..end].to_owned();
                    self.pos += end;
                    item
                }
            };
            items.push(item);
            self.skip_whitespace();
            if self.eat(",") {
                continue;
            }
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            return Err(self.expected(if close == ']' {
                "',' or ']'"
            } else {
                "',' or ')'"
            }));
        }
    }

    fn typed_value(&self, subject: &Subject, value: String) -> Result<Argument, ExpressionError> {
        match subject {
            Subject::RegisteredAt => parse_timestamp(&value).map(Argument::Timestamp).ok_or_else(
                || self.invalid(subject, &value, "valid formats are 2018-06-18T22:28:28+00:00, 2018-06-18T22:28:28Z, 2018-06-18T22:28:28 and 2018-06-18"),
            ),
            Subject::RunningTasksCount => value
                .parse::<u64>()
                .map(Argument::Count)
                .map_err(|_| self.invalid(subject, &value, "expected a whole number")),
            Subject::AgentConnected => parse_bool(&value)
                .map(Argument::Bool)
                .ok_or_else(|| self.invalid(subject, &value, "expected true or false")),
            _ => Ok(Argument::Value(Comparable::new(&value))),
        }
    }

    fn typed_list(
        &self,
        subject: &Subject,
        list: Vec<String>,
    ) -> Result<Argument, ExpressionError> {
        if *subject == Subject::AgentConnected {
            let bools = list
                .iter()
                .map(|item| {
                    parse_bool(item)
                        .ok_or_else(|| self.invalid(subject, item, "expected true or false"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Argument::Bools(bools));
        }
        Ok(Argument::List(list))
    }

    fn invalid(&self, subject: &Subject, argument: &str, reason: &'static str) -> ExpressionError {
        ExpressionError::InvalidArgument {
            expression: self.text.to_owned(),
            subject: subject.to_string(),
            argument: argument.to_owned(),
            reason,
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Characters of attribute names (AWS: letters, digits, hyphens, underscores, slashes, back
/// slashes, periods; `@` is accepted by `PutAttributes` too) and of subject keywords.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '\\' | '.' | '@')
}
