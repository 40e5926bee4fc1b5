//! The tokens of capDL text: names, numbers (decimal, `0x` hex, `0o` octal), strings,
//! punctuation and `..`; `--` line comments and nested `/* */` comments are skipped.

use super::ParseError;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tok {
    Ident(String),
    Number(u64),
    Str(String),
    Punct(char),
    Dots,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ident(s) => write!(f, "`{s}`"),
            Self::Number(n) => write!(f, "number {n}"),
            Self::Str(s) => write!(f, "string \"{s}\""),
            Self::Punct(c) => write!(f, "`{c}`"),
            Self::Dots => f.write_str("`..`"),
        }
    }
}

pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: usize,
    pub(super) column: usize,
}

pub(super) fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut column) = (0, 1, 1);
    let mut out = Vec::new();
    let err = |line, column, message: String| ParseError { line, column, message };
    while i < chars.len() {
        let c = chars[i];
        let advance = |i: &mut usize, line: &mut usize, column: &mut usize, n: usize| {
            for k in 0..n {
                if chars[*i + k] == '\n' {
                    *line += 1;
                    *column = 1;
                } else {
                    *column += 1;
                }
            }
            *i += n;
        };
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut column, 1);
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut column, 1);
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let (l0, c0) = (line, column);
            let mut depth = 0;
            loop {
                if i + 1 >= chars.len() {
                    return Err(err(l0, c0, "unterminated comment".into()));
                }
                if chars[i] == '/' && chars[i + 1] == '*' {
                    depth += 1;
                    advance(&mut i, &mut line, &mut column, 2);
                } else if chars[i] == '*' && chars[i + 1] == '/' {
                    depth -= 1;
                    advance(&mut i, &mut line, &mut column, 2);
                    if depth == 0 {
                        break;
                    }
                } else {
                    advance(&mut i, &mut line, &mut column, 1);
                }
            }
        } else if c.is_ascii_alphabetic() {
            let start = i;
            let (l0, c0) = (line, column);
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '@' | '-' | '.'))
                && !(chars[i] == '.' && chars.get(i + 1) == Some(&'.'))
            {
                advance(&mut i, &mut line, &mut column, 1);
            }
            out.push(Token { tok: Tok::Ident(chars[start..i].iter().collect()), line: l0, column: c0 });
        } else if c.is_ascii_digit() {
            let (l0, c0) = (line, column);
            let (radix, skip) = match (c, chars.get(i + 1)) {
                ('0', Some('x' | 'X')) => (16, 2),
                ('0', Some('o' | 'O')) => (8, 2),
                _ => (10, 0),
            };
            advance(&mut i, &mut line, &mut column, skip);
            let start = i;
            while i < chars.len() && chars[i].is_digit(radix) {
                advance(&mut i, &mut line, &mut column, 1);
            }
            let digits: String = chars[start..i].iter().collect();
            let value = u64::from_str_radix(&digits, radix)
                .map_err(|_| err(l0, c0, format!("bad number `{digits}`")))?;
            out.push(Token { tok: Tok::Number(value), line: l0, column: c0 });
        } else if c == '"' {
            let (l0, c0) = (line, column);
            advance(&mut i, &mut line, &mut column, 1);
            let start = i;
            while i < chars.len() && chars[i] != '"' {
                advance(&mut i, &mut line, &mut column, 1);
            }
            if i >= chars.len() {
                return Err(err(l0, c0, "unterminated string".into()));
            }
            let s: String = chars[start..i].iter().collect();
            advance(&mut i, &mut line, &mut column, 1);
            out.push(Token { tok: Tok::Str(s), line: l0, column: c0 });
        } else if c == '.' && chars.get(i + 1) == Some(&'.') {
            out.push(Token { tok: Tok::Dots, line, column });
            advance(&mut i, &mut line, &mut column, 2);
        } else if "={}()[]:,;-/.<>".contains(c) {
            out.push(Token { tok: Tok::Punct(c), line, column });
            advance(&mut i, &mut line, &mut column, 1);
        } else {
            return Err(err(line, column, format!("unexpected character `{c}`")));
        }
    }
    Ok(out)
}
