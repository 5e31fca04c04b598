//! The profile expression language: small boolean expressions over a machine's signals, parsed
//! once when the profile loads and evaluated on every change of a signal they read.
//!
//! ```text
//! expr    := or
//! or      := and (("||" | "or") and)*
//! and     := not (("&&" | "and") not)*
//! not     := ("!" | "not") not | cmp
//! cmp     := atom (("==" | "!=" | "<" | "<=" | ">" | ">=") atom)?
//! atom    := number | 'text' | "text" | true | false | UNAVAILABLE | signal | "(" expr ")"
//! ```
//!
//! A signal name is a canonical signal id (`execution`, `spindle_load`) or a signal the profile
//! defines. Words compare case-insensitively (`execution == 'active'` holds for `ACTIVE`);
//! numbers compare as numbers, also when the machine sent them as text. A bare signal is true
//! when it is `true`, a non-zero number, or one of the words `ON`, `TRUE`, `YES`, `1`. An
//! UNAVAILABLE signal is false and equals only `UNAVAILABLE`.

use std::fmt;
use std::sync::Arc;

use crate::model::Value;

/// A parse error: the byte offset in the expression text and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset + 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A compiled expression. Signals are referred to by index into the profile's signal table,
/// resolved by the `resolve` function given to [`parse`].
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Lit(Value),
    Signal(usize),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = src.get(i..i + 2).unwrap_or("");
        let op2 = ["==", "!=", "<=", ">=", "&&", "||"]
            .into_iter()
            .find(|o| *o == two);
        if let Some(op) = op2 {
            out.push((start, Tok::Op(op)));
            i += 2;
            continue;
        }
        match c {
            b'(' => out.push((start, Tok::LParen)),
            b')' => out.push((start, Tok::RParen)),
            b'<' => out.push((start, Tok::Op("<"))),
            b'>' => out.push((start, Tok::Op(">"))),
            b'!' => out.push((start, Tok::Op("!"))),
            b'=' => {
                return Err(ExprError {
                    offset: start,
                    message: "expected `==` to compare, found a single `=`".into(),
                });
            }
            b'\'' | b'"' => {
                let close = src[i + 1..].find(c as char).ok_or_else(|| ExprError {
                    offset: start,
                    message: format!("unterminated text: no closing {}", c as char),
                })?;
                out.push((start, Tok::Str(src[i + 1..i + 1 + close].to_string())));
                i += close + 2;
                continue;
            }
            b'0'..=b'9' | b'-' | b'.' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.' || b[j] == b'e') {
                    j += 1;
                }
                let text = &src[i..j];
                let n: f64 = text.parse().map_err(|_| ExprError {
                    offset: start,
                    message: format!("expected a number, found {text:?}"),
                })?;
                out.push((start, Tok::Num(n)));
                i = j;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'.')) {
                    j += 1;
                }
                let word = &src[i..j];
                let tok = match word {
                    "and" => Tok::Op("&&"),
                    "or" => Tok::Op("||"),
                    "not" => Tok::Op("!"),
                    _ => Tok::Ident(word.to_string()),
                };
                out.push((start, tok));
                i = j;
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(ExprError {
                    offset: start,
                    message: format!("unexpected character {ch:?}"),
                });
            }
        }
        i += 1;
    }
    Ok(out)
}

struct Parser<'a, F> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    resolve: &'a mut F,
}

impl<F: FnMut(&str) -> Option<usize>> Parser<'_, F> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(o, _)| *o)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.and()?;
        while self.eat_op("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.not()?;
        while self.eat_op("&&") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        if self.eat_op("!") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, ExprError> {
        let left = self.atom()?;
        let op = match self.peek() {
            Some(Tok::Op("==")) => CmpOp::Eq,
            Some(Tok::Op("!=")) => CmpOp::Ne,
            Some(Tok::Op("<")) => CmpOp::Lt,
            Some(Tok::Op("<=")) => CmpOp::Le,
            Some(Tok::Op(">")) => CmpOp::Gt,
            Some(Tok::Op(">=")) => CmpOp::Ge,
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.atom()?;
        Ok(Expr::Cmp(op, Box::new(left), Box::new(right)))
    }

    fn atom(&mut self) -> Result<Expr, ExprError> {
        let offset = self.offset();
        let Some((_, tok)) = self.toks.get(self.pos).cloned() else {
            return Err(ExprError {
                offset,
                message: "expected a signal, a number or 'text', found the end".into(),
            });
        };
        self.pos += 1;
        Ok(match tok {
            Tok::Num(n) => Expr::Lit(Value::Float(n)),
            Tok::Str(s) => Expr::Lit(Value::Text(Arc::from(s.as_str()))),
            Tok::LParen => {
                let e = self.or()?;
                if !matches!(self.peek(), Some(Tok::RParen)) {
                    return Err(ExprError {
                        offset: self.offset(),
                        message: "expected `)`".into(),
                    });
                }
                self.pos += 1;
                e
            }
            Tok::Ident(w) if w == "true" || w == "TRUE" => Expr::Lit(Value::Bool(true)),
            Tok::Ident(w) if w == "false" || w == "FALSE" => Expr::Lit(Value::Bool(false)),
            Tok::Ident(w) if w == "UNAVAILABLE" => Expr::Lit(Value::Unavailable),
            Tok::Ident(w) => match (self.resolve)(&w) {
                Some(i) => Expr::Signal(i),
                None => {
                    return Err(ExprError {
                        offset,
                        message: format!(
                            "unknown signal `{w}`: expected a canonical signal or one this profile defines above (quote words: '{w}')"
                        ),
                    });
                }
            },
            Tok::Op(o) => {
                return Err(ExprError {
                    offset,
                    message: format!("expected a signal, a number or 'text', found `{o}`"),
                });
            }
            Tok::RParen => {
                return Err(ExprError {
                    offset,
                    message: "expected a signal, a number or 'text', found `)`".into(),
                });
            }
        })
    }
}

/// Parses `src`; `resolve` maps a signal name to its index (None: unknown name).
pub fn parse(src: &str, mut resolve: impl FnMut(&str) -> Option<usize>) -> Result<Expr, ExprError> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err(ExprError {
            offset: 0,
            message: "expected an expression, found nothing".into(),
        });
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.len(),
        resolve: &mut resolve,
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(ExprError {
            offset: p.offset(),
            message: "expected an operator (==, &&, || …) or the end".into(),
        });
    }
    Ok(e)
}

/// Whether a value counts as true on its own.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0 && !f.is_nan(),
        Value::Text(t) => {
            let t = t.trim();
            ["ON", "TRUE", "YES", "1"]
                .iter()
                .any(|w| t.eq_ignore_ascii_case(w))
        }
        Value::Unavailable => false,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Text(t) => t.trim().parse().ok(),
        Value::Bool(_) | Value::Unavailable => None,
        other => other.as_f64(),
    }
}

fn compare(op: CmpOp, a: &Value, b: &Value) -> bool {
    use std::cmp::Ordering;
    if a.is_unavailable() || b.is_unavailable() {
        let same = a.is_unavailable() && b.is_unavailable();
        return match op {
            CmpOp::Eq => same,
            CmpOp::Ne => !same,
            _ => false,
        };
    }
    let ord = match (a, b) {
        (Value::Bool(x), other) | (other, Value::Bool(x)) => {
            let eq = *x == truthy(other);
            return match op {
                CmpOp::Eq => eq,
                CmpOp::Ne => !eq,
                _ => false,
            };
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => {
                let (x, y) = (a.to_string(), b.to_string());
                Some(
                    x.trim()
                        .to_ascii_uppercase()
                        .cmp(&y.trim().to_ascii_uppercase()),
                )
            }
        },
    };
    let Some(ord) = ord else { return false };
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    }
}

impl Expr {
    /// Evaluates to a value (comparisons and logic give booleans).
    pub fn value(&self, signals: &[Value]) -> Value {
        match self {
            Expr::Lit(v) => v.clone(),
            Expr::Signal(i) => signals.get(*i).cloned().unwrap_or(Value::Unavailable),
            other => Value::Bool(other.eval(signals)),
        }
    }

    /// Evaluates as a condition.
    pub fn eval(&self, signals: &[Value]) -> bool {
        match self {
            Expr::Lit(v) => truthy(v),
            Expr::Signal(i) => signals.get(*i).is_some_and(truthy),
            Expr::Not(e) => !e.eval(signals),
            Expr::And(a, b) => a.eval(signals) && b.eval(signals),
            Expr::Or(a, b) => a.eval(signals) || b.eval(signals),
            Expr::Cmp(op, a, b) => compare(*op, &a.value(signals), &b.value(signals)),
        }
    }

    /// The signals this expression reads.
    pub fn reads(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Lit(_) => {}
            Expr::Signal(i) => {
                if !out.contains(i) {
                    out.push(*i);
                }
            }
            Expr::Not(e) => e.reads(out),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(_, a, b) => {
                a.reads(out);
                b.reads(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["execution", "spindle_load", "door", "cycle"];

    fn p(src: &str) -> Result<Expr, ExprError> {
        parse(src, |n| NAMES.iter().position(|x| *x == n))
    }

    fn sig(exec: &str, load: f64, door: &str, cycle: Value) -> Vec<Value> {
        vec![
            Value::text(exec),
            Value::Float(load),
            Value::text(door),
            cycle,
        ]
    }

    #[test]
    fn evaluates_words_numbers_and_logic() {
        let e = p("execution == 'active' && spindle_load > 5").unwrap();
        assert!(e.eval(&sig("ACTIVE", 12.0, "CLOSED", Value::Bool(false))));
        assert!(!e.eval(&sig("ACTIVE", 2.0, "CLOSED", Value::Bool(false))));
        assert!(!e.eval(&sig("READY", 12.0, "CLOSED", Value::Bool(false))));
        let e = p("not (door == \"OPEN\") or cycle").unwrap();
        assert!(e.eval(&sig("READY", 0.0, "CLOSED", Value::Bool(false))));
        assert!(e.eval(&sig("READY", 0.0, "OPEN", Value::text("ON"))));
        assert!(!e.eval(&sig("READY", 0.0, "OPEN", Value::text("OFF"))));
        // Numbers sent as text compare as numbers.
        let e = p("spindle_load >= 10").unwrap();
        assert!(e.eval(&[Value::Unavailable, Value::text("10.0")]));
        assert!(!e.eval(&[Value::Unavailable, Value::text("9")]));
        assert!(!e.eval(&[Value::Unavailable, Value::Unavailable]));
        let e = p("execution == UNAVAILABLE").unwrap();
        assert!(e.eval(&[Value::Unavailable]));
        let mut reads = Vec::new();
        p("cycle && (door != 'OPEN' || cycle)")
            .unwrap()
            .reads(&mut reads);
        assert_eq!(reads, vec![3, 2]);
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = p("execution = 'ACTIVE'").unwrap_err();
        assert_eq!(e.offset, 10);
        assert!(e.message.contains("=="), "{e}");
        let e = p("executoin == 'ACTIVE'").unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("unknown signal `executoin`"), "{e}");
        let e = p("(cycle && door").unwrap_err();
        assert!(e.message.contains("`)`"), "{e}");
        assert!(p("").is_err());
        assert!(p("cycle door").is_err());
        assert!(p("'open").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_anything_never_panics(s in ".{0,64}") {
            let _ = p(&s);
        }
    }
}
