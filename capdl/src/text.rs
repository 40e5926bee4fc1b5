//! seL4's capDL text syntax: a reader (with line and column in every error) and a writer
//! that produces one canonical form.
//!
//! The reader takes hostile text: every number is checked before it is narrowed or
//! multiplied (indices and array sizes fit 32 bits, sizes in bits are at most 64, frame
//! sizes fit 64 bits, slot and IRQ numbering stops at 2^64), a range (`f[a..b]`) must lie
//! in an array declared before it, and a file holds at most [`MAX_CAPS`] capabilities, so
//! what it builds is bounded by the length of the text.

use crate::model::{
    Cap, CapParams, Lifetime, ObjRef, Object, ObjectKind, Spec, TCB_SLOT_NAMES, Target, TcbParams,
};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// A syntax error, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
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

struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
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
        } else if "={}()[]:,;-/".contains(c) {
            out.push(Token { tok: Tok::Punct(c), line, column });
            advance(&mut i, &mut line, &mut column, 1);
        } else {
            return Err(err(line, column, format!("unexpected character `{c}`")));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    end: (usize, usize),
    /// Capabilities read so far, against `MAX_CAPS`.
    caps: usize,
}

/// The most capabilities one file may hold. Ranges (`f[0..N]`) multiply text into
/// capabilities, so the reader bounds what it builds; a million is well beyond any
/// system seL4's or Cleave's tools describe.
pub const MAX_CAPS: usize = 1 << 20;

type Parsed<T> = Result<T, ParseError>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|t| &t.tok)
    }
    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.tokens.get(self.at + n).map(|t| &t.tok)
    }
    fn error<T>(&self, message: String) -> Parsed<T> {
        let (line, column) = self.tokens.get(self.at).map_or(self.end, |t| (t.line, t.column));
        Err(ParseError { line, column, message })
    }
    fn next(&mut self, what: &str) -> Parsed<Tok> {
        match self.tokens.get(self.at) {
            Some(t) => {
                self.at += 1;
                Ok(t.tok.clone())
            }
            None => self.error(format!("expected {what}, found the end of the file")),
        }
    }
    fn punct(&mut self, c: char) -> Parsed<()> {
        match self.peek() {
            Some(Tok::Punct(p)) if *p == c => {
                self.at += 1;
                Ok(())
            }
            Some(other) => {
                let other = other.to_string();
                self.error(format!("expected `{c}`, found {other}"))
            }
            None => self.error(format!("expected `{c}`, found the end of the file")),
        }
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn ident(&mut self, what: &str) -> Parsed<String> {
        match self.peek().cloned() {
            Some(Tok::Ident(s)) => {
                self.at += 1;
                Ok(s)
            }
            Some(other) => self.error(format!("expected {what}, found {other}")),
            None => self.error(format!("expected {what}, found the end of the file")),
        }
    }
    fn keyword(&mut self, word: &str) -> Parsed<()> {
        match self.peek() {
            Some(Tok::Ident(s)) if s == word => {
                self.at += 1;
                Ok(())
            }
            _ => self.error(format!("expected `{word}`")),
        }
    }
    fn number(&mut self, what: &str) -> Parsed<u64> {
        match self.peek().cloned() {
            Some(Tok::Number(n)) => {
                self.at += 1;
                Ok(n)
            }
            Some(other) => self.error(format!("expected {what} (a number), found {other}")),
            None => self.error(format!("expected {what}, found the end of the file")),
        }
    }

    /// `name` or `name[i]`.
    fn obj_ref(&mut self) -> Parsed<ObjRef> {
        let name = self.ident("an object name")?;
        let index = if self.eat('[') {
            let i = self.number("an index")?;
            self.at -= 1;
            let i = self.narrow(i, "an index")?;
            self.at += 1;
            self.punct(']')?;
            Some(i)
        } else {
            None
        };
        Ok(ObjRef { name, index })
    }

    fn spec(&mut self) -> Parsed<Spec> {
        self.keyword("arch")?;
        let arch = self.ident("an architecture")?;
        if !["ia32", "arm11", "aarch32", "x86_64", "aarch64", "riscv"].contains(&arch.as_str()) {
            self.at -= 1;
            return self.error(format!("unknown architecture `{arch}`"));
        }
        let mut spec = Spec { arch, ..Spec::default() };
        while let Some(tok) = self.peek().cloned() {
            match tok {
                Tok::Ident(s) if s == "objects" => {
                    self.at += 1;
                    self.punct('{')?;
                    while !self.eat('}') {
                        let object = self.object()?;
                        if spec.objects.iter().any(|o| o.name == object.name) {
                            self.at -= 1;
                            return self.error(format!("object `{}` declared twice", object.name));
                        }
                        spec.objects.push(object);
                    }
                }
                Tok::Ident(s) if s == "caps" => {
                    self.at += 1;
                    self.punct('{')?;
                    while !self.eat('}') {
                        self.cap_block(&mut spec)?;
                    }
                }
                Tok::Ident(s) if s == "irq" => {
                    self.at += 1;
                    self.keyword("maps")?;
                    self.punct('{')?;
                    // `None` once the numbering has run past the largest number.
                    let mut next = Some(0u64);
                    while !self.eat('}') {
                        if matches!(self.peek(), Some(Tok::Number(_))) {
                            next = Some(self.number("an IRQ number")?);
                            self.punct(':')?;
                        }
                        let at = self.at;
                        let Some(number) = next else {
                            return self.error("IRQ numbers run past 2^64".into());
                        };
                        let irq = self.obj_ref()?;
                        if spec.irqs.insert(number, irq).is_some() {
                            self.at = at;
                            return self.error(format!("IRQ {number} mapped twice"));
                        }
                        next = number.checked_add(1);
                        self.eat(';');
                    }
                }
                other => {
                    return self.error(format!("expected `objects`, `caps` or `irq maps`, found {other}"));
                }
            }
        }
        Ok(spec)
    }

    fn object(&mut self) -> Parsed<Object> {
        let name = self.ident("an object name")?;
        let count = if self.eat('[') {
            let n = self.number("an array size")?;
            self.at -= 1;
            let n = self.narrow(n, "an array size")?;
            self.at += 1;
            self.punct(']')?;
            Some(n)
        } else {
            None
        };
        self.punct('=')?;
        let type_at = self.at;
        let keyword = self.ident("an object type")?;
        let mut params: BTreeMap<String, ParamValue> = BTreeMap::new();
        let mut size_bits = None;
        let mut frame_size = None;
        if self.eat('(') {
            while !self.eat(')') {
                match self.peek().cloned() {
                    Some(Tok::Number(n)) => {
                        self.at += 1;
                        match self.peek() {
                            Some(Tok::Ident(s)) if s == "bits" => {
                                if n > 64 {
                                    self.at -= 1;
                                    return self.error(format!("{n} bits is more than a 64-bit word"));
                                }
                                self.at += 1;
                                size_bits = Some(n);
                            }
                            Some(Tok::Ident(s)) if s == "k" || s == "M" => {
                                let (unit, suffix) =
                                    if s == "k" { (1u64 << 10, "k") } else { (1 << 20, "M") };
                                let Some(size) = n.checked_mul(unit) else {
                                    self.at -= 1;
                                    return self
                                        .error(format!("frame size {n}{suffix} does not fit in 64 bits"));
                                };
                                self.at += 1;
                                frame_size = Some(size);
                            }
                            _ => return self.error("expected `bits`, `k` or `M` after the number".into()),
                        }
                    }
                    Some(Tok::Ident(key)) => {
                        self.at += 1;
                        self.punct(':')?;
                        let value = self.param_value()?;
                        if params.insert(key.clone(), value).is_some() {
                            return self.error(format!("parameter `{key}` given twice"));
                        }
                    }
                    _ => return self.error("expected an object parameter".into()),
                }
                if !self.eat(',') && self.peek() != Some(&Tok::Punct(')')) {
                    return self.error("expected `,` or `)`".into());
                }
            }
        }
        let mut children = Vec::new();
        if self.eat('{') {
            while !self.eat('}') {
                children.push(self.obj_ref()?);
                self.eat(',');
            }
        }
        let end = self.at;
        self.at = type_at;
        let kind = self.kind(&keyword, params, size_bits, frame_size, children)?;
        self.at = end;
        Ok(Object { name, count, kind })
    }

    fn param_value(&mut self) -> Parsed<ParamValue> {
        match self.peek().cloned() {
            Some(Tok::Number(n)) => {
                self.at += 1;
                Ok(ParamValue::Number(n))
            }
            Some(Tok::Ident(s)) if s == "True" || s == "False" => {
                self.at += 1;
                Ok(ParamValue::Bool(s == "True"))
            }
            Some(Tok::Ident(s)) => {
                self.at += 1;
                Ok(ParamValue::Name(s))
            }
            Some(Tok::Punct('[')) => {
                self.at += 1;
                let mut items = Vec::new();
                let mut raw = Vec::new();
                while !self.eat(']') {
                    if self.eat('{') {
                        let mut words = Vec::new();
                        while !self.eat('}') {
                            words.push(match self.next("fill data")? {
                                Tok::Str(s) => format!("\"{s}\""),
                                Tok::Ident(s) => s,
                                Tok::Number(n) => n.to_string(),
                                // As written, not as an error message shows it: the
                                // canonical form must read back the same.
                                Tok::Punct(c) => c.to_string(),
                                Tok::Dots => "..".to_string(),
                            });
                        }
                        raw.push(words.join(" "));
                    } else {
                        let a = self.number("a list element")?;
                        if self.peek() == Some(&Tok::Dots) {
                            self.at += 1;
                            let b = self.number("the end of a range")?;
                            items.push((a, Some(b)));
                        } else {
                            items.push((a, None));
                        }
                    }
                    self.eat(',');
                }
                Ok(if raw.is_empty() { ParamValue::List(items) } else { ParamValue::Fill(raw) })
            }
            _ => self.error("expected a parameter value".into()),
        }
    }

    fn kind(
        &mut self,
        keyword: &str,
        mut params: BTreeMap<String, ParamValue>,
        size_bits: Option<u64>,
        frame_size: Option<u64>,
        children: Vec<ObjRef>,
    ) -> Parsed<ObjectKind> {
        let bits = |what: &str| -> Parsed<u32> {
            // `object` refused anything above 64, so the narrowing is exact.
            size_bits.map(|b| b as u32).ok_or(ParseError {
                line: 0,
                column: 0,
                message: format!("{what} needs `N bits`"),
            })
        };
        let kind = match keyword {
            "ep" => ObjectKind::Endpoint,
            "notification" => ObjectKind::Notification,
            "pt" => ObjectKind::PageTable,
            "pd" => ObjectKind::PageDirectory,
            "pdpt" => ObjectKind::Pdpt,
            "pml4" => ObjectKind::Pml4,
            "irq" => ObjectKind::Irq,
            "vcpu" => ObjectKind::Vcpu,
            "ept_pml4" => ObjectKind::EptTable { level: 4 },
            "ept_pdpt" => ObjectKind::EptTable { level: 3 },
            "ept_pd" => ObjectKind::EptTable { level: 2 },
            "ept_pt" => ObjectKind::EptTable { level: 1 },
            "rtreply" => ObjectKind::Reply,
            "cnode" => ObjectKind::CNode { size_bits: bits("a cnode").map_err(|e| self.here(e))? },
            "ut" => ObjectKind::Untyped {
                // At most 64 (checked in `object`), so exact.
                size_bits: size_bits.map(|b| b as u32),
                paddr: take_num(&mut params, "paddr").map_err(|e| self.here(e))?,
                children,
            },
            "frame" => {
                let fill = match params.remove("fill") {
                    Some(ParamValue::Fill(f)) => f,
                    Some(ParamValue::List(l)) if l.is_empty() => Vec::new(),
                    None => Vec::new(),
                    Some(_) => return self.error("`fill` takes `[{…}, …]`".into()),
                };
                let Some(size) = frame_size else {
                    return self.error("a frame needs a size (`4k`, `2M`)".into());
                };
                if !size.is_power_of_two() {
                    return self.error(format!("frame size {size} is not a power of two"));
                }
                ObjectKind::Frame {
                    size,
                    paddr: take_num(&mut params, "paddr").map_err(|e| self.here(e))?,
                    fill,
                }
            }
            "tcb" => {
                let resume = match params.remove("resume") {
                    None => None,
                    Some(ParamValue::Bool(b)) => Some(b),
                    Some(_) => return self.error("`resume` takes True or False".into()),
                };
                let init = match params.remove("init") {
                    None => Vec::new(),
                    Some(ParamValue::List(l)) if l.iter().all(|(_, b)| b.is_none()) => {
                        l.into_iter().map(|(a, _)| a).collect()
                    }
                    Some(_) => return self.error("`init` takes `[n, …]`".into()),
                };
                let elf = match params.remove("elf") {
                    None => None,
                    Some(ParamValue::Name(n)) => Some(n),
                    Some(_) => return self.error("`elf` takes a name".into()),
                };
                let restart_ms = take_num(&mut params, "restart_ms").map_err(|e| self.here(e))?;
                let lifetime = match (params.remove("lifetime"), restart_ms) {
                    (None, None) => None,
                    (Some(ParamValue::Name(n)), ms) => match (n.as_str(), ms) {
                        ("persistent", None) => Some(Lifetime::Persistent),
                        ("disposable", None) => Some(Lifetime::Disposable),
                        ("per_request", None) => Some(Lifetime::PerRequest),
                        ("restart", Some(ms)) if ms > 0 => Some(Lifetime::RestartEvery { ms }),
                        ("restart", _) => {
                            return self.error("`lifetime: restart` needs `restart_ms: N` (N > 0)".into());
                        }
                        (other, None) => {
                            return self.error(format!(
                                "unknown lifetime `{other}` (persistent, disposable, restart, per_request)"
                            ));
                        }
                        (_, Some(_)) => {
                            return self.error("`restart_ms` goes with `lifetime: restart` only".into());
                        }
                    },
                    (None, Some(_)) => {
                        return self.error("`restart_ms` goes with `lifetime: restart` only".into());
                    }
                    (Some(_), _) => return self.error("`lifetime` takes a name".into()),
                };
                let ends_run = match params.remove("ends_run") {
                    None => false,
                    Some(ParamValue::Bool(b)) => b,
                    Some(_) => return self.error("`ends_run` takes True or False".into()),
                };
                let quiet = match params.remove("quiet") {
                    None => false,
                    Some(ParamValue::Bool(b)) => b,
                    Some(_) => return self.error("`quiet` takes True or False".into()),
                };
                let mut t =
                    TcbParams { resume, init, elf, lifetime, ends_run, quiet, ..TcbParams::default() };
                for (key, field) in [
                    ("addr", &mut t.addr),
                    ("ip", &mut t.ip),
                    ("sp", &mut t.sp),
                    ("prio", &mut t.prio),
                    ("max_prio", &mut t.max_prio),
                    ("affinity", &mut t.affinity),
                    ("dom", &mut t.dom),
                    ("fault_ep", &mut t.fault_ep),
                ] {
                    *field = take_num(&mut params, key).map_err(|e| self.here(e))?;
                }
                ObjectKind::Tcb(t)
            }
            "io_ports" => match params.remove("ports") {
                Some(ParamValue::List(l)) if l.len() == 1 && l[0].1.is_some() => {
                    ObjectKind::IoPorts { first: l[0].0, last: l[0].1.unwrap_or(l[0].0) }
                }
                _ => return self.error("io_ports needs `ports: [first..last]`".into()),
            },
            "asid_pool" => ObjectKind::AsidPool {
                asid_high: take_num(&mut params, "asid_high").map_err(|e| self.here(e))?,
            },
            "sc" => ObjectKind::SchedContext {
                period: take_num(&mut params, "period").map_err(|e| self.here(e))?,
                budget: take_num(&mut params, "budget").map_err(|e| self.here(e))?,
                data: take_num(&mut params, "data").map_err(|e| self.here(e))?,
            },
            other => return self.error(format!("unknown object type `{other}`")),
        };
        if let Some(key) = params.keys().next() {
            return self.error(format!("`{keyword}` takes no parameter `{key}`"));
        }
        if size_bits.is_some() && !matches!(kind, ObjectKind::CNode { .. } | ObjectKind::Untyped { .. }) {
            return self.error(format!("`{keyword}` takes no size in bits"));
        }
        Ok(kind)
    }

    /// Narrows the number at the current token to 32 bits, or says where it does not fit.
    fn narrow(&self, n: u64, what: &str) -> Parsed<u32> {
        match u32::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => self.error(format!("{what} {n} does not fit in 32 bits")),
        }
    }

    /// Gives a location to an error made without one.
    fn here(&self, mut e: ParseError) -> ParseError {
        if e.line == 0 {
            let (line, column) = self.tokens.get(self.at).map_or(self.end, |t| (t.line, t.column));
            e.line = line;
            e.column = column;
        }
        e
    }

    fn cap_block(&mut self, spec: &mut Spec) -> Parsed<()> {
        let container = self.obj_ref()?;
        self.punct('{')?;
        // `None` once the numbering has run past the largest slot number.
        let mut next_slot = Some(0u64);
        let slots = spec.caps.entry(container.clone()).or_default();
        while !self.eat('}') {
            // `slot:` is a number or a symbolic name followed by a colon.
            if matches!(self.peek_at(1), Some(Tok::Punct(':'))) {
                next_slot = Some(match self.next("a slot")? {
                    Tok::Number(n) => n,
                    Tok::Ident(s) => match TCB_SLOT_NAMES.iter().find(|(n, _)| *n == s) {
                        Some(&(_, slot)) => slot,
                        None => {
                            self.at -= 1;
                            return self.error(format!("unknown slot name `{s}`"));
                        }
                    },
                    other => {
                        self.at -= 1;
                        return self.error(format!("expected a slot, found {other}"));
                    }
                });
                self.punct(':')?;
            }
            let name_at = self.at;
            let name = self.ident("a capability target")?;
            let (first, last) = if self.eat('[') {
                let a = self.number("an index")?;
                let b = if self.peek() == Some(&Tok::Dots) {
                    self.at += 1;
                    self.number("the end of a range")?
                } else {
                    a
                };
                // Check the range against the array before building anything: a
                // range is as long as its text says, not as the file is.
                // A single index only has to fit (the validator checks it against the
                // array); a range must lie within an array declared before it.
                let array = spec.objects.iter().find(|o| o.name == name).map(|o| o.count);
                let (low, high) = (a.min(b), a.max(b));
                match array {
                    _ if a == b && a > u64::from(u32::MAX) => {
                        self.at = name_at;
                        return self.error(format!("index {a} does not fit in 32 bits"));
                    }
                    _ if a == b => {}
                    Some(Some(count)) if high < u64::from(count) => {}
                    Some(Some(count)) => {
                        self.at = name_at;
                        return self.error(format!(
                            "the range `{name}[{a}..{b}]` is outside the array (`{name}` has {count} elements)"
                        ));
                    }
                    Some(None) => {
                        self.at = name_at;
                        return self.error(format!("`{name}` is not an array, so it takes no range"));
                    }
                    None => {
                        self.at = name_at;
                        return self.error(format!(
                            "the range `{name}[{a}..{b}]` names no array declared before it"
                        ));
                    }
                }
                if high - low >= MAX_CAPS as u64 || self.caps + (high - low) as usize >= MAX_CAPS {
                    self.at = name_at;
                    return self.error(format!(
                        "more than {MAX_CAPS} capabilities in one file (the reader's limit)"
                    ));
                }
                self.punct(']')?;
                (Some(a), b)
            } else {
                (None, 0)
            };
            let params = if self.eat('(') { self.cap_params()? } else { CapParams::default() };
            let target = |index: Option<u64>| -> Target {
                match (name.as_str(), index) {
                    ("irq_control", None) => Target::IrqControl,
                    ("asid_control", None) => Target::AsidControl,
                    ("io_space_master", None) => Target::IoSpaceMaster,
                    ("domain", None) => Target::Domain,
                    ("sched_control", None) => Target::SchedControl,
                    // Every index was checked against a declared array (so it fits
                    // in 32 bits) above.
                    (n, i) => Target::Object(ObjRef { name: n.into(), index: i.map(|i| i as u32) }),
                }
            };
            let indices: Vec<Option<u64>> = match first {
                None => alloc::vec![None],
                Some(a) if a <= last => (a..=last).map(Some).collect(),
                Some(a) => (last..=a).rev().map(Some).collect(),
            };
            for index in indices {
                let Some(slot) = next_slot else {
                    self.at = name_at;
                    return self.error("slot numbers run past 2^64".into());
                };
                if slots.insert(slot, Cap { target: target(index), params: params.clone() }).is_some() {
                    return self.error(format!("slot {slot} of `{container}` filled twice"));
                }
                self.caps += 1;
                next_slot = slot.checked_add(1);
            }
            if self.caps > MAX_CAPS {
                self.at = name_at;
                return self
                    .error(format!("more than {MAX_CAPS} capabilities in one file (the reader's limit)"));
            }
            self.eat(';');
        }
        Ok(())
    }

    fn cap_params(&mut self) -> Parsed<CapParams> {
        let mut p = CapParams::default();
        loop {
            let key = self.ident("a capability parameter")?;
            let all_rights = !key.is_empty() && key.chars().all(|c| "RWGPX".contains(c));
            if all_rights && self.peek() != Some(&Tok::Punct(':')) {
                for c in key.chars() {
                    match c {
                        'R' => p.rights.read = true,
                        'W' => p.rights.write = true,
                        'G' | 'X' => p.rights.grant = true,
                        _ => p.rights.grant_reply = true,
                    }
                }
            } else {
                match key.as_str() {
                    "cached" => p.uncached = false,
                    "uncached" => p.uncached = true,
                    "reply" => p.reply = true,
                    "master_reply" => p.master_reply = true,
                    "badge" | "guard" | "guard_size" | "core" => {
                        self.punct(':')?;
                        let n = self.number(&key)?;
                        match key.as_str() {
                            "badge" => p.badge = n,
                            "guard" => p.guard = n,
                            "guard_size" => p.guard_size = n,
                            _ => p.core = Some(n),
                        }
                    }
                    "asid" => {
                        self.punct(':')?;
                        self.punct('(')?;
                        let high = self.number("the ASID's high part")?;
                        self.punct(',')?;
                        let low = self.number("the ASID's low part")?;
                        self.punct(')')?;
                        p.asid = Some((high, low));
                    }
                    other => {
                        self.at -= 1;
                        return self.error(format!("unknown capability parameter `{other}`"));
                    }
                }
            }
            if self.eat(')') {
                return Ok(p);
            }
            self.punct(',')?;
        }
    }
}

/// Takes numeric parameter `key` out of `params`.
fn take_num(params: &mut BTreeMap<String, ParamValue>, key: &str) -> Parsed<Option<u64>> {
    match params.remove(key) {
        None => Ok(None),
        Some(ParamValue::Number(n)) => Ok(Some(n)),
        Some(_) => Err(ParseError { line: 0, column: 0, message: format!("`{key}` takes a number") }),
    }
}

enum ParamValue {
    Number(u64),
    Name(String),
    Bool(bool),
    List(Vec<(u64, Option<u64>)>),
    Fill(Vec<String>),
}

/// Reads a capDL text specification.
pub fn read(text: &str) -> Result<Spec, ParseError> {
    let tokens = lex(text)?;
    let lines = text.lines().count().max(1);
    let last_len = text.lines().last().map_or(0, |l| l.chars().count());
    let mut parser = Parser { tokens, at: 0, end: (lines, last_len + 1), caps: 0 };
    parser.spec()
}

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

/// Writes `spec` in the canonical text form.
pub fn write(spec: &Spec) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "arch {}", spec.arch);
    let _ = writeln!(out, "\nobjects {{");
    for o in &spec.objects {
        let count = o.count.map(|n| format!("[{n}]")).unwrap_or_default();
        let _ = write!(out, "  {}{count} = {}", o.name, o.kind.keyword());
        let mut params: Vec<String> = Vec::new();
        let mut children = &[][..];
        match &o.kind {
            ObjectKind::CNode { size_bits } => params.push(format!("{size_bits} bits")),
            ObjectKind::Untyped { size_bits, paddr, children: c } => {
                if let Some(b) = size_bits {
                    params.push(format!("{b} bits"));
                }
                if let Some(p) = paddr {
                    params.push(format!("paddr: {}", hex(*p)));
                }
                children = c;
            }
            ObjectKind::Frame { size, paddr, fill } => {
                params.push(if size >= &(1 << 20) && size % (1 << 20) == 0 {
                    format!("{}M", size >> 20)
                } else {
                    format!("{}k", size >> 10)
                });
                if let Some(p) = paddr {
                    params.push(format!("paddr: {}", hex(*p)));
                }
                if !fill.is_empty() {
                    let items: Vec<String> = fill.iter().map(|f| format!("{{{f}}}")).collect();
                    params.push(format!("fill: [{}]", items.join(", ")));
                }
            }
            ObjectKind::Tcb(t) => {
                for (key, value, as_hex) in [
                    ("addr", t.addr, true),
                    ("ip", t.ip, true),
                    ("sp", t.sp, true),
                    ("prio", t.prio, false),
                    ("max_prio", t.max_prio, false),
                    ("affinity", t.affinity, false),
                ] {
                    if let Some(v) = value {
                        params.push(format!("{key}: {}", if as_hex { hex(v) } else { v.to_string() }));
                    }
                }
                if let Some(r) = t.resume {
                    params.push(format!("resume: {}", if r { "True" } else { "False" }));
                }
                for (key, value) in [("dom", t.dom), ("fault_ep", t.fault_ep)] {
                    if let Some(v) = value {
                        params.push(format!("{key}: {v}"));
                    }
                }
                if !t.init.is_empty() {
                    let items: Vec<String> = t.init.iter().map(u64::to_string).collect();
                    params.push(format!("init: [{}]", items.join(", ")));
                }
                if let Some(elf) = &t.elf {
                    params.push(format!("elf: {elf}"));
                }
                if let Some(lifetime) = t.lifetime {
                    params.push(format!("lifetime: {}", lifetime.keyword()));
                    if let Lifetime::RestartEvery { ms } = lifetime {
                        params.push(format!("restart_ms: {ms}"));
                    }
                }
                if t.ends_run {
                    params.push("ends_run: True".into());
                }
                if t.quiet {
                    params.push("quiet: True".into());
                }
            }
            ObjectKind::IoPorts { first, last } => {
                params.push(format!("ports: [{}..{}]", hex(*first), hex(*last)))
            }
            ObjectKind::AsidPool { asid_high: Some(h) } => params.push(format!("asid_high: {}", hex(*h))),
            ObjectKind::SchedContext { period, budget, data } => {
                for (key, value) in [("period", period), ("budget", budget), ("data", data)] {
                    if let Some(v) = value {
                        params.push(format!("{key}: {v}"));
                    }
                }
            }
            _ => {}
        }
        if !params.is_empty() {
            let _ = write!(out, " ({})", params.join(", "));
        }
        if !children.is_empty() {
            let names: Vec<String> = children.iter().map(ObjRef::to_string).collect();
            let _ = write!(out, " {{{}}}", names.join(", "));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "}}\n\ncaps {{");
    for (container, slots) in &spec.caps {
        let _ = writeln!(out, "  {container} {{");
        for (slot, cap) in slots {
            let target = match &cap.target {
                Target::Object(r) => r.to_string(),
                Target::IrqControl => "irq_control".into(),
                Target::AsidControl => "asid_control".into(),
                Target::IoSpaceMaster => "io_space_master".into(),
                Target::Domain => "domain".into(),
                Target::SchedControl => "sched_control".into(),
            };
            let _ = write!(out, "    {slot}: {target}");
            let p = &cap.params;
            let mut params: Vec<String> = Vec::new();
            if !p.rights.is_empty() {
                params.push(p.rights.to_string());
            }
            for (key, value) in [("badge", p.badge), ("guard", p.guard), ("guard_size", p.guard_size)] {
                if value != 0 {
                    params.push(format!("{key}: {value}"));
                }
            }
            if p.uncached {
                params.push("uncached".into());
            }
            if let Some((h, l)) = p.asid {
                params.push(format!("asid: ({}, {})", hex(h), hex(l)));
            }
            if p.reply {
                params.push("reply".into());
            }
            if p.master_reply {
                params.push("master_reply".into());
            }
            if let Some(c) = p.core {
                params.push(format!("core: {c}"));
            }
            if !params.is_empty() {
                let _ = write!(out, " ({})", params.join(", "));
            }
            out.push('\n');
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "}}\n\nirq maps {{");
    for (irq, object) in &spec.irqs {
        let _ = writeln!(out, "  {irq}: {object}");
    }
    let _ = writeln!(out, "}}");
    out
}

#[cfg(test)]
mod tests;
