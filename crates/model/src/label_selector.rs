//! Label selectors: the `meta/v1` `LabelSelector` object and the string syntax of
//! the `?labelSelector=` query parameter.
//!
//! String syntax (as Kubernetes `labels.Parse`, restricted to the operators that
//! `meta/v1` `LabelSelector` can hold): requirements joined by `,` (logical AND), each one of
//!
//! | form | meaning | becomes |
//! |---|---|---|
//! | `key=value`, `key==value` | label `key` has `value` | `matchLabels` |
//! | `key!=value` | label `key` is absent or not `value` | `NotIn [value]` |
//! | `key in (v1,v2)` | label `key` is one of the values | `In` |
//! | `key notin (v1,v2)` | label `key` is absent or none of the values | `NotIn` |
//! | `key` | label `key` exists | `Exists` |
//! | `!key` | label `key` does not exist | `DoesNotExist` |
//!
//! The empty string is the empty selector, which matches every object. Keys must be
//! qualified names and values label values ([`crate::syntax`]). `LabelSelector`'s
//! [`Display`](std::fmt::Display) prints this syntax, and parsing what it prints gives the
//! same selector back.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::syntax;

/// A label query over a set of objects, as `meta/v1` `LabelSelector`.
///
/// `matchLabels` and `matchExpressions` are ANDed. The empty selector matches every
/// object (where a selector is optional, an absent one matches nothing: see the field's docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One requirement of a [`LabelSelector`], as `meta/v1` `LabelSelectorRequirement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key the requirement applies to.
    pub key: String,
    /// How the key relates to the values.
    pub operator: LabelSelectorOperator,
    /// Values for `In` and `NotIn` (non-empty); must be empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Operator of a [`LabelSelectorRequirement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum LabelSelectorOperator {
    /// The label exists and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label exists, whatever its value.
    Exists,
    /// The label does not exist.
    DoesNotExist,
}

// === impl LabelSelector ===

impl LabelSelector {
    /// Parses the `?labelSelector=` string syntax (see the module docs).
    ///
    /// # Errors
    ///
    /// [`Error::LabelSelector`] with the byte offset of the problem and what was expected.
    pub fn parse(input: &str) -> Result<Self, Error> {
        Parser::new(input).parse()
    }

    /// True if the selector has no requirement (it matches every object).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl FromStr for LabelSelector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            if first {
                first = false;
                Ok(())
            } else {
                f.write_str(",")
            }
        };
        for (k, v) in &self.match_labels {
            sep(f)?;
            write!(f, "{k}={v}")?;
        }
        for r in &self.match_expressions {
            sep(f)?;
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

// === impl LabelSelectorRequirement ===

impl LabelSelectorRequirement {
    /// Whether an object with these labels satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            LabelSelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            // As Kubernetes: `NotIn` (and `!=`) also match objects without the label.
            LabelSelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            LabelSelectorOperator::Exists => value.is_some(),
            LabelSelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for LabelSelectorRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match self.operator {
            LabelSelectorOperator::In => write!(f, "{key} in ({})", self.values.join(",")),
            LabelSelectorOperator::NotIn => write!(f, "{key} notin ({})", self.values.join(",")),
            LabelSelectorOperator::Exists => write!(f, "{key}"),
            LabelSelectorOperator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}

// === parser ===

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Ident(&'a str),
    Not,
    NotEquals,
    Equals,
    OpenParen,
    CloseParen,
    Comma,
    End,
}

impl Token<'_> {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("{:?}", truncate(s)),
            Token::Not => "'!'".to_owned(),
            Token::NotEquals => "'!='".to_owned(),
            Token::Equals => "'='".to_owned(),
            Token::OpenParen => "'('".to_owned(),
            Token::CloseParen => "')'".to_owned(),
            Token::Comma => "','".to_owned(),
            Token::End => "end of input".to_owned(),
        }
    }
}

/// Error messages quote input; keep them short whatever was sent.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    /// Offset and token read ahead by `peek`.
    peeked: Option<(usize, Token<'a>)>,
}

fn is_special(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | ',' | '!' | '=' | '<' | '>')
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Self {
            input,
            pos: 0,
            peeked: None,
        }
    }

    fn err(&self, offset: usize, message: impl Into<String>) -> Error {
        Error::LabelSelector {
            offset,
            message: message.into(),
        }
    }

    fn lex(&mut self) -> Result<(usize, Token<'a>), Error> {
        let rest = self.input.get(self.pos..).unwrap_or("");
        let trimmed = rest.trim_start();
        let start = self.pos + (rest.len() - trimmed.len());
        let mut chars = trimmed.chars();
        let (len, token) = match chars.next() {
            None => (0, Token::End),
            Some('(') => (1, Token::OpenParen),
            Some(')') => (1, Token::CloseParen),
            Some(',') => (1, Token::Comma),
            Some('!') if chars.next() == Some('=') => (2, Token::NotEquals),
            Some('!') => (1, Token::Not),
            Some('=') if chars.next() == Some('=') => (2, Token::Equals),
            Some('=') => (1, Token::Equals),
            Some(c @ ('<' | '>')) => {
                return Err(self.err(
                    start,
                    format!(
                        "operator '{c}' is not supported by label selectors; \
                         use '=', '==', '!=', 'in', 'notin', 'key' or '!key'"
                    ),
                ));
            }
            Some(_) => {
                let len = trimmed.find(is_special).unwrap_or(trimmed.len());
                (len, Token::Ident(trimmed.get(..len).unwrap_or("")))
            }
        };
        self.pos = start + len;
        Ok((start, token))
    }

    fn next(&mut self) -> Result<(usize, Token<'a>), Error> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn peek(&mut self) -> Result<&(usize, Token<'a>), Error> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex()?);
        }
        match &self.peeked {
            Some(t) => Ok(t),
            None => Err(self.err(self.pos, "internal parser error")),
        }
    }

    fn parse(mut self) -> Result<LabelSelector, Error> {
        let mut sel = LabelSelector::default();
        if self.peek()?.1 == Token::End {
            return Ok(sel);
        }
        loop {
            self.requirement(&mut sel)?;
            match self.next()? {
                (_, Token::End) => return Ok(sel),
                (_, Token::Comma) => {}
                (at, t) => {
                    return Err(self.err(
                        at,
                        format!("expected ',' or end of input, found {}", t.describe()),
                    ));
                }
            }
        }
    }

    fn key(&mut self) -> Result<&'a str, Error> {
        match self.next()? {
            // Unlike Kubernetes, `in` and `notin` are taken as keys here: they are valid
            // label keys, and at the start of a requirement they cannot be operators.
            (at, Token::Ident(k)) => {
                syntax::qualified_name(k).map_err(|m| {
                    self.err(at, format!("invalid label key {:?}: {m}", truncate(k)))
                })?;
                Ok(k)
            }
            (at, t) => Err(self.err(at, format!("expected a label key, found {}", t.describe()))),
        }
    }

    fn value(&self, at: usize, v: &str) -> Result<String, Error> {
        syntax::label_value(v)
            .map_err(|m| self.err(at, format!("invalid label value {:?}: {m}", truncate(v))))?;
        Ok(v.to_owned())
    }

    fn requirement(&mut self, sel: &mut LabelSelector) -> Result<(), Error> {
        if self.peek()?.1 == Token::Not {
            self.next()?;
            let key = self.key()?;
            sel.match_expressions.push(LabelSelectorRequirement {
                key: key.to_owned(),
                operator: LabelSelectorOperator::DoesNotExist,
                values: Vec::new(),
            });
            return Ok(());
        }
        let key = self.key()?;
        let (at, op) = self.peek()?.clone();
        let requirement = |operator, values| LabelSelectorRequirement {
            key: key.to_owned(),
            operator,
            values,
        };
        match op {
            Token::End | Token::Comma => {
                sel.match_expressions
                    .push(requirement(LabelSelectorOperator::Exists, Vec::new()));
            }
            Token::Equals | Token::NotEquals => {
                self.next()?;
                let value = self.single_value()?;
                if op == Token::NotEquals {
                    sel.match_expressions
                        .push(requirement(LabelSelectorOperator::NotIn, vec![value]));
                } else {
                    match sel.match_labels.get(key) {
                        // `a=x,a=y`: keep both (the selector then matches nothing) rather
                        // than let the second overwrite the first.
                        Some(existing) if *existing != value => sel
                            .match_expressions
                            .push(requirement(LabelSelectorOperator::In, vec![value])),
                        Some(_) => {}
                        None => {
                            sel.match_labels.insert(key.to_owned(), value);
                        }
                    }
                }
            }
            Token::Ident(word @ ("in" | "notin")) => {
                self.next()?;
                let values = self.set_values(word)?;
                let operator = if word == "in" {
                    LabelSelectorOperator::In
                } else {
                    LabelSelectorOperator::NotIn
                };
                sel.match_expressions.push(requirement(operator, values));
            }
            t => {
                return Err(self.err(
                    at,
                    format!(
                        "expected '=', '==', '!=', 'in', 'notin', ',' or end of input \
                         after label key {:?}, found {}",
                        truncate(key),
                        t.describe()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The value after `=`, `==` or `!=`; nothing before `,` or the end is the empty value.
    fn single_value(&mut self) -> Result<String, Error> {
        let (at, t) = self.peek()?.clone();
        match t {
            Token::Ident(v) => {
                self.next()?;
                self.value(at, v)
            }
            Token::Comma | Token::End => Ok(String::new()),
            t => Err(self.err(
                at,
                format!("expected a label value, found {}", t.describe()),
            )),
        }
    }

    /// `( v1, v2, … )`; an empty slot between commas is the empty value, as Kubernetes.
    fn set_values(&mut self, word: &str) -> Result<Vec<String>, Error> {
        match self.next()? {
            (_, Token::OpenParen) => {}
            (at, t) => {
                return Err(self.err(
                    at,
                    format!("expected '(' after '{word}', found {}", t.describe()),
                ));
            }
        }
        if let (at, Token::CloseParen) = self.peek()?.clone() {
            return Err(self.err(at, format!("the value set of '{word}' must not be empty")));
        }
        let mut values = Vec::new();
        loop {
            let (at, t) = self.peek()?.clone();
            if let Token::Ident(v) = t {
                self.next()?;
                values.push(self.value(at, v)?);
            } else {
                values.push(String::new());
            }
            match self.next()? {
                (_, Token::Comma) => {}
                (_, Token::CloseParen) => return Ok(values),
                (at, t) => {
                    return Err(self.err(
                        at,
                        format!(
                            "expected ',' or ')' in the value set, found {}",
                            t.describe()
                        ),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn req(
        key: &str,
        operator: LabelSelectorOperator,
        values: &[&str],
    ) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn parses_every_form() {
        use LabelSelectorOperator::*;
        let sel =
            LabelSelector::parse(" a=b, c==d ,e!=f,g in (x, y),h notin (z),i,!j, example.com/k=")
                .unwrap();
        assert_eq!(
            sel.match_labels,
            labels(&[("a", "b"), ("c", "d"), ("example.com/k", "")])
        );
        assert_eq!(
            sel.match_expressions,
            vec![
                req("e", NotIn, &["f"]),
                req("g", In, &["x", "y"]),
                req("h", NotIn, &["z"]),
                req("i", Exists, &[]),
                req("j", DoesNotExist, &[]),
            ]
        );
    }

    #[test]
    fn empty_is_everything() {
        let sel = LabelSelector::parse("  ").unwrap();
        assert!(sel.is_empty());
        assert!(sel.matches(&labels(&[])));
        assert_eq!(sel.to_string(), "");
    }

    #[test]
    fn conflicting_equalities_are_both_kept() {
        let sel = LabelSelector::parse("a=x,a=y").unwrap();
        assert!(!sel.matches(&labels(&[("a", "x")])));
        assert!(!sel.matches(&labels(&[("a", "y")])));
    }

    #[test]
    fn set_with_empty_slot() {
        let sel = LabelSelector::parse("a in (x,)").unwrap();
        assert_eq!(sel.match_expressions[0].values, vec!["x", ""]);
    }

    #[test]
    fn errors_say_where_and_what() {
        let cases = [
            ("a=b,", 4, "expected a label key, found end of input"),
            ("a in ()", 6, "must not be empty"),
            ("a in x", 5, "expected '('"),
            ("a>1", 1, "not supported"),
            ("a b", 2, "after label key \"a\""),
            ("-a=b", 0, "invalid label key"),
            ("a=-b", 2, "invalid label value"),
            ("a in (x y)", 8, "expected ',' or ')'"),
            ("!", 1, "expected a label key"),
            ("in (x)", 3, "after label key \"in\""),
            (",a", 0, "expected a label key"),
            ("a=b)", 3, "expected ',' or end of input"),
        ];
        for (input, offset, needle) in cases {
            match LabelSelector::parse(input) {
                Err(Error::LabelSelector { offset: o, message }) => {
                    assert_eq!(o, offset, "{input}: {message}");
                    assert!(message.contains(needle), "{input}: {message}");
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn matching() {
        let l = labels(&[("env", "prod"), ("tier", "web")]);
        let yes = [
            "env=prod",
            "env in (dev,prod)",
            "tier",
            "!missing",
            "env!=dev",
            "missing!=x",
            "missing notin (x)",
            "env=prod,tier=web",
            "",
        ];
        let no = [
            "env=dev",
            "env in (dev)",
            "missing",
            "!tier",
            "env!=prod",
            "env notin (prod)",
            "env=prod,tier=db",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
    }

    #[test]
    fn serde_shape() {
        let sel: LabelSelector = serde_json::from_str(
            r#"{"matchLabels":{"a":"b"},"matchExpressions":[{"key":"c","operator":"In","values":["d"]}]}"#,
        )
        .unwrap();
        assert_eq!(sel.to_string(), "a=b,c in (d)");
        assert!(serde_json::from_str::<LabelSelector>(r#"{"matchLabel":{}}"#).is_err());
        assert!(
            serde_json::from_str::<LabelSelector>(
                r#"{"matchExpressions":[{"key":"c","operator":"Gt"}]}"#
            )
            .is_err()
        );
    }

    fn name_part() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,61}[a-zA-Z0-9])?"
    }

    fn key() -> impl Strategy<Value = String> {
        (
            proptest::option::of("[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,8}){0,2}"),
            name_part(),
        )
            .prop_map(|(p, n)| match p {
                Some(p) => format!("{p}/{n}"),
                None => n,
            })
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), name_part()]
    }

    fn requirement() -> impl Strategy<Value = LabelSelectorRequirement> {
        use LabelSelectorOperator::*;
        (
            key(),
            prop_oneof![Just(In), Just(NotIn), Just(Exists), Just(DoesNotExist)],
            // A set holding only the empty value has no string form (`k in ()` is refused).
            proptest::collection::vec(value(), 1..4).prop_filter("lone empty value", |v| {
                v.len() > 1 || v.first().is_some_and(|s| !s.is_empty())
            }),
        )
            .prop_map(|(key, operator, values)| LabelSelectorRequirement {
                key,
                operator,
                values: if matches!(operator, In | NotIn) {
                    values
                } else {
                    Vec::new()
                },
            })
    }

    fn selector() -> impl Strategy<Value = LabelSelector> {
        (
            proptest::collection::btree_map(key(), value(), 0..4),
            proptest::collection::vec(requirement(), 0..4),
        )
            .prop_map(|(match_labels, match_expressions)| LabelSelector {
                match_labels,
                match_expressions,
            })
    }

    proptest! {
        #[test]
        fn parse_display_round_trip(sel in selector()) {
            let text = sel.to_string();
            prop_assert_eq!(LabelSelector::parse(&text).unwrap(), sel, "{}", text);
        }

        #[test]
        fn parser_never_panics(input in "[a-z=!(), ]{0,30}|\\PC{0,30}") {
            let _ = LabelSelector::parse(&input);
        }
    }
}
