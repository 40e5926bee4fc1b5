//! The reader: capDL text to a [`Spec`].
//!
//! It reads in one pass over the tokens and resolves at the end what may name things
//! declared later: references inside untyped covers, copies of named capabilities
//! (`<name>`) and the derivation tree. Everything a range, a path or a copy builds is
//! counted against [`MAX_CAPS`] or [`MAX_ENTRIES`] before it is built.

use super::lex::{Tok, Token};
use super::{MAX_CAPS, MAX_ENTRIES, MAX_NESTING, ParseError};
use crate::model::{
    Cap, CapParams, CapRef, Lifetime, ObjRef, Object, ObjectKind, Rights, Spec, TCB_SLOT_NAMES, Target,
    TcbParams,
};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

type Parsed<T> = Result<T, ParseError>;

/// One range inside brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Range {
    /// `n`.
    Only(u64),
    /// `a..b` (descending if `b < a`).
    FromTo(u64, u64),
    /// `a..`: to the last element.
    From(u64),
    /// `..b`: from the first element.
    To(u64),
    /// `[]`: every element.
    All,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Only(n) => write!(f, "{n}"),
            Self::FromTo(a, b) => write!(f, "{a}..{b}"),
            Self::From(a) => write!(f, "{a}.."),
            Self::To(b) => write!(f, "..{b}"),
            Self::All => Ok(()),
        }
    }
}

/// A name as written, with the ranges in brackets after it: `f`, `f[3]`, `f[0..3, 7, 9..]`,
/// `f[]`.
#[derive(Clone, Debug)]
struct NameRef {
    name: String,
    /// `None` without brackets; each range with the token it starts at.
    ranges: Option<Vec<(Range, usize)>>,
    /// The token of the name.
    at: usize,
}

impl fmt::Display for NameRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(ranges) = &self.ranges {
            f.write_str("[")?;
            for (i, (range, _)) in ranges.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{range}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

impl NameRef {
    /// `Some` if it names at most one element: `Some(None)` for a plain name, the index
    /// (with its token) for `f[i]` or `f[i..i]`.
    fn single(&self) -> Option<Option<(u64, usize)>> {
        match self.ranges.as_deref() {
            None => Some(None),
            Some(&[(Range::Only(i), at)]) => Some(Some((i, at))),
            Some(&[(Range::FromTo(a, b), at)]) if a == b => Some(Some((a, at))),
            _ => None,
        }
    }

    fn is_all(&self) -> bool {
        matches!(self.ranges.as_deref(), Some(&[(Range::All, _)]))
    }
}

/// A place named in a derivation or a copy: `(object, slot)`, or a capability's name.
#[derive(Clone, Debug)]
enum Place {
    At(CapRef),
    Named(ObjRef),
}

/// A copy of a named capability (`<name> (masked: R)`), resolved at the end.
struct PendingCopy {
    source: ObjRef,
    masked: Option<Rights>,
    at: usize,
}

/// A child-parent pair of the derivation tree, resolved at the end.
struct Derivation {
    child: Place,
    parent: Place,
    at: usize,
}

/// What one line of a capability block gives, applied to every container the block names.
enum Item {
    Cap { slot: u64, cap: Cap, at: usize },
    Copy { slot: u64, source: ObjRef, masked: Option<Rights>, at: usize },
    Name { name: ObjRef, slot: u64, at: usize },
    Derive { slot: u64, parent: Place, at: usize },
}

/// The slot numbering of a capability block: the next slot, and those filled.
struct Slots {
    /// `None` once the numbering has run past the largest slot number.
    next: Option<u64>,
    used: BTreeSet<u64>,
}

impl Slots {
    /// The next slot, for the capability at token `at` of the block of `head`.
    fn take(&mut self, parser: &Parser, head: &NameRef, at: usize) -> Parsed<u64> {
        let Some(slot) = self.next else {
            return parser.error_at(at, "slot numbers run past 2^64".into());
        };
        if !self.used.insert(slot) {
            return parser.error_at(at, format!("slot {slot} of `{head}` filled twice"));
        }
        self.next = slot.checked_add(1);
        Ok(slot)
    }
}

enum ParamValue {
    Number(u64),
    Name(String),
    Bool(bool),
    List(Vec<(u64, Option<u64>)>),
    Fill(Vec<String>),
}

/// An object's parameters as written, before its type gives them meaning.
#[derive(Default)]
struct Params {
    named: BTreeMap<String, ParamValue>,
    /// `N bits`.
    size_bits: Option<u64>,
    /// `4k`, `2M`: bytes.
    frame_size: Option<u64>,
    /// `bus:dev.fun`.
    pci: Option<(u64, u64, u64)>,
}

/// Object types of seL4's grammar for Arm, which this reader does not take.
const ARM_TYPES: [&str; 8] =
    ["arm_irq", "pud", "pgd", "arm_io_device", "streamid", "contextbank", "smc", "arm_sgi_signal"];

const CAP_LIMIT: &str = "capabilities in one file";
const ENTRY_LIMIT: &str = "covered objects, IRQ mappings, capability names and derivations in one file";

pub(super) struct Parser {
    tokens: Vec<Token>,
    at: usize,
    end: (usize, usize),
    /// Capabilities read so far, against `MAX_CAPS`.
    caps: usize,
    /// Other entries ranges and names build, against `MAX_ENTRIES`.
    entries: usize,
    /// Declared objects by name: their place in `Spec::objects`.
    declared: BTreeMap<String, usize>,
    /// Untypeds a path (`a/b = …`) named before any declaration of them.
    implicit: BTreeSet<String>,
    /// Every (untyped, object) pair of the covers so far: a cover lists an object once.
    covered: BTreeSet<(ObjRef, ObjRef)>,
    /// References inside untyped covers that have ranges, resolved at the end.
    pending_covers: Vec<(ObjRef, NameRef)>,
    /// Capability names (`slot: name = …`, `name = (object, slot)`) and their places.
    cap_names: BTreeMap<ObjRef, CapRef>,
    /// Capability names given to arrays of capabilities (`name[] = f[]`), with their size.
    cap_arrays: BTreeMap<String, Option<u32>>,
    copies: BTreeMap<CapRef, PendingCopy>,
    derivations: Vec<Derivation>,
    /// Items of `domains { }` given so far.
    domain_items: BTreeSet<String>,
}

impl Parser {
    pub(super) fn new(tokens: Vec<Token>, end: (usize, usize)) -> Self {
        Self {
            tokens,
            at: 0,
            end,
            caps: 0,
            entries: 0,
            declared: BTreeMap::new(),
            implicit: BTreeSet::new(),
            covered: BTreeSet::new(),
            pending_covers: Vec::new(),
            cap_names: BTreeMap::new(),
            cap_arrays: BTreeMap::new(),
            copies: BTreeMap::new(),
            derivations: Vec::new(),
            domain_items: BTreeSet::new(),
        }
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|t| &t.tok)
    }
    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.tokens.get(self.at + n).map(|t| &t.tok)
    }
    fn error<T>(&self, message: String) -> Parsed<T> {
        self.error_at(self.at, message)
    }
    /// An error at token `at` (the end of the file if there is no such token).
    fn error_at<T>(&self, at: usize, message: String) -> Parsed<T> {
        let (line, column) = self.tokens.get(at).map_or(self.end, |t| (t.line, t.column));
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

    /// Narrows `n`, written at token `at`, to 32 bits, or says where it does not fit.
    fn narrow(&self, n: u64, at: usize, what: &str) -> Parsed<u32> {
        match u32::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => self.error_at(at, format!("{what} {n} does not fit in 32 bits")),
        }
    }

    /// Counts `n` more entries against [`MAX_ENTRIES`].
    fn add_entries(&mut self, n: usize, at: usize) -> Parsed<()> {
        match self.entries.checked_add(n) {
            Some(total) if total <= MAX_ENTRIES => {
                self.entries = total;
                Ok(())
            }
            _ => self.error_at(at, format!("more than {MAX_ENTRIES} {ENTRY_LIMIT} (the reader's limit)")),
        }
    }

    /// How many elements the object `name` has: `None` if nothing of that name is declared
    /// (yet), `Some(None)` if it is not an array.
    fn declared_count(&self, spec: &Spec, name: &str) -> Option<Option<u32>> {
        self.declared.get(name).map(|&i| spec.objects[i].count)
    }

    /// `name`, `name[ranges]` or `name[]`.
    fn name_ref(&mut self, what: &str) -> Parsed<NameRef> {
        let at = self.at;
        let name = self.ident(what)?;
        let ranges = if self.eat('[') {
            let mut ranges = Vec::new();
            if self.eat(']') {
                ranges.push((Range::All, at + 1));
            } else {
                loop {
                    let start = self.at;
                    let range = if self.peek() == Some(&Tok::Dots) {
                        self.at += 1;
                        Range::To(self.number("the end of a range")?)
                    } else {
                        let a = self.number("an index")?;
                        if self.peek() == Some(&Tok::Dots) {
                            self.at += 1;
                            if matches!(self.peek(), Some(Tok::Number(_))) {
                                Range::FromTo(a, self.number("the end of a range")?)
                            } else {
                                Range::From(a)
                            }
                        } else {
                            Range::Only(a)
                        }
                    };
                    ranges.push((range, start));
                    if self.eat(']') {
                        break;
                    }
                    self.punct(',')?;
                }
            }
            Some(ranges)
        } else {
            None
        };
        Ok(NameRef { name, ranges, at })
    }

    /// The elements `r` names: `[None]` for a plain name, one index, or every index its
    /// ranges give, in order. A single index only has to fit in 32 bits (validation checks
    /// it against the array); ranges must lie within `declared` (the array's size, as
    /// [`Parser::declared_count`] gives it; `scope` says where it must be declared) and may
    /// build at most `room` elements: a range is as long as its text says, not as the file
    /// is.
    fn expand(
        &self,
        r: &NameRef,
        declared: Option<Option<u32>>,
        scope: &str,
        room: usize,
        limit: (usize, &str),
    ) -> Parsed<Vec<Option<u32>>> {
        let Some(ranges) = &r.ranges else { return Ok(vec![None]) };
        if let Some(Some((i, at))) = r.single() {
            return Ok(vec![Some(self.narrow(i, at, "an index")?)]);
        }
        let name = &r.name;
        let count = match declared {
            Some(Some(count)) => u64::from(count),
            Some(None) => {
                return self.error_at(r.at, format!("`{name}` is not an array, so it takes no range"));
            }
            None => return self.error_at(r.at, format!("the range `{r}` names no array {scope}")),
        };
        let mut spans = Vec::new();
        let mut total = 0u64;
        for &(range, _) in ranges {
            let (first, last) = match range {
                Range::All if count == 0 => continue,
                Range::All => (0, count - 1),
                Range::Only(i) => (i, i),
                Range::FromTo(a, b) => (a, b),
                Range::From(a) => (a, count.saturating_sub(1)),
                Range::To(b) => (0, b),
            };
            if first.max(last) >= count {
                return self.error_at(
                    r.at,
                    format!("the range `{r}` is outside the array (`{name}` has {count} elements)"),
                );
            }
            total = total.saturating_add(first.abs_diff(last) + 1);
            spans.push((first, last));
        }
        if total > room as u64 {
            let (n, what) = limit;
            return self.error_at(r.at, format!("more than {n} {what} (the reader's limit)"));
        }
        let mut out = Vec::new();
        for (first, last) in spans {
            // Both lie below a 32-bit count.
            if first <= last {
                out.extend((first..=last).map(|i| Some(i as u32)));
            } else {
                out.extend((last..=first).rev().map(|i| Some(i as u32)));
            }
        }
        Ok(out)
    }

    pub(super) fn spec(&mut self) -> Parsed<Spec> {
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
                        self.object(&mut spec, None, 0)?;
                    }
                }
                Tok::Ident(s) if s == "caps" => {
                    self.at += 1;
                    self.punct('{')?;
                    while !self.eat('}') {
                        if matches!(self.peek(), Some(Tok::Ident(_)))
                            && self.peek_at(1) == Some(&Tok::Punct('='))
                        {
                            self.cap_name_declaration()?;
                        } else {
                            self.cap_block(&mut spec)?;
                        }
                    }
                }
                Tok::Ident(s) if s == "irq" => {
                    self.at += 1;
                    self.keyword("maps")?;
                    self.irq_maps(&mut spec)?;
                }
                Tok::Ident(s) if s == "cdt" => {
                    self.at += 1;
                    self.punct('{')?;
                    while !self.eat('}') {
                        self.derivation_tree(0)?;
                    }
                }
                Tok::Ident(s) if s == "domains" => {
                    self.at += 1;
                    self.domains(&mut spec)?;
                }
                other => {
                    return self.error(format!(
                        "expected `objects`, `caps`, `cdt`, `irq maps` or `domains`, found {other}"
                    ));
                }
            }
        }
        self.resolve_covers(&mut spec)?;
        self.resolve_copies(&mut spec)?;
        self.resolve_derivations(&mut spec)?;
        Ok(spec)
    }

    /// One declaration: `name = type (params)`, `name[N] = …`, a path of untypeds that
    /// cover it (`a/b/name = …`), and for an untyped the objects it covers in braces,
    /// declared there or named. `parent` is the untyped whose braces it is in.
    fn object(&mut self, spec: &mut Spec, parent: Option<&ObjRef>, depth: usize) -> Parsed<()> {
        let mut path = vec![self.name_ref("an object name")?];
        while self.eat('/') {
            path.push(self.name_ref("an object name")?);
        }
        let Some(base) = path.pop() else { return self.error("expected an object name".into()) };
        self.punct('=')?;
        let type_at = self.at;
        let keyword = self.ident("an object type")?;
        let params = self.object_params()?;
        let end = self.at;
        self.at = type_at;
        let kind = self.kind(&keyword, params)?;
        self.at = end;
        // Each untyped of the path covers the next; the last covers this object.
        let mut chain: Vec<(ObjRef, usize)> = parent.map(|p| (p.clone(), type_at)).into_iter().collect();
        for p in &path {
            chain.push((self.path_untyped(spec, p)?, p.at));
        }
        let key = self.declare(spec, &base, kind, type_at)?;
        chain.push((key.clone(), base.at));
        for pair in chain.windows(2) {
            self.cover(spec, &pair[0].0, pair[1].0.clone(), pair[1].1)?;
        }
        if self.peek() == Some(&Tok::Punct('{')) {
            let brace_at = self.at;
            self.at += 1;
            let object = &spec.objects[self.declared[&base.name]];
            if !matches!(object.kind, ObjectKind::Untyped { .. }) {
                return self.error_at(
                    brace_at,
                    format!("only an untyped covers objects; `{keyword}` takes no `{{ … }}`"),
                );
            }
            if key.index.is_none() && object.count.is_some() {
                let name = &base.name;
                return self.error_at(
                    brace_at,
                    format!("`{name}` is an array of untypeds: give what each element covers (`{name}[0] = ut {{ … }}`)"),
                );
            }
            if depth >= MAX_NESTING {
                return self.error_at(brace_at, format!("untyped covers nest more than {MAX_NESTING} deep"));
            }
            while !self.eat('}') {
                if self.declaration_ahead() {
                    self.object(spec, Some(&key), depth + 1)?;
                } else {
                    let r = self.name_ref("an object name or a declaration")?;
                    self.pending_covers.push((key.clone(), r));
                }
                self.eat(',');
            }
        }
        Ok(())
    }

    /// Whether the tokens ahead are a declaration (`a[…]/b = …`) rather than a name.
    fn declaration_ahead(&self) -> bool {
        let mut i = self.at;
        let tok = |i: usize| self.tokens.get(i).map(|t| &t.tok);
        loop {
            if !matches!(tok(i), Some(Tok::Ident(_))) {
                return false;
            }
            i += 1;
            if tok(i) == Some(&Tok::Punct('[')) {
                while tok(i) != Some(&Tok::Punct(']')) {
                    if tok(i).is_none() {
                        return false;
                    }
                    i += 1;
                }
                i += 1;
            }
            if tok(i) != Some(&Tok::Punct('/')) {
                return tok(i) == Some(&Tok::Punct('='));
            }
            i += 1;
        }
    }

    /// The element `index` (written at `at`) of an object with `count` elements, for a
    /// declaration or a path.
    fn element(
        &self,
        name: &str,
        count: Option<u32>,
        index: Option<(u64, usize)>,
        at: usize,
    ) -> Parsed<ObjRef> {
        match (count, index) {
            (None, None) => Ok(ObjRef::named(name)),
            (Some(n), Some((i, _))) if i < u64::from(n) => Ok(ObjRef::element(name, i as u32)),
            (Some(n), Some((i, at))) => {
                self.error_at(at, format!("`{name}` has {n} elements, not an element {i}"))
            }
            (Some(_), None) => self.error_at(at, format!("`{name}` is an array: name an element")),
            (None, Some((_, at))) => self.error_at(at, format!("`{name}` is not an array")),
        }
    }

    /// The untyped a path names (`a` or `a[i]` in `a/x = …`); an undeclared name becomes an
    /// untyped of no given size, which a later declaration may complete.
    fn path_untyped(&mut self, spec: &mut Spec, p: &NameRef) -> Parsed<ObjRef> {
        let Some(index) = p.single() else {
            return self.error_at(p.at, format!("`{p}`: a path names one untyped each step"));
        };
        match self.declared.get(&p.name) {
            Some(&i) => {
                let o = &spec.objects[i];
                if !matches!(o.kind, ObjectKind::Untyped { .. }) {
                    return self
                        .error_at(p.at, format!("`{}` is not an untyped, so it covers nothing", p.name));
                }
                self.element(&p.name, o.count, index, p.at)
            }
            None if index.is_none() => {
                spec.objects.push(Object {
                    name: p.name.clone(),
                    count: None,
                    kind: ObjectKind::Untyped { size_bits: None, paddr: None },
                });
                self.declared.insert(p.name.clone(), spec.objects.len() - 1);
                self.implicit.insert(p.name.clone());
                Ok(ObjRef::named(&p.name))
            }
            None => self.error_at(p.at, format!("`{p}` names no untyped declared before it")),
        }
    }

    /// Declares `base` (or, for an untyped declared before, names it again to give what it
    /// covers); returns what a cover names it by.
    fn declare(
        &mut self,
        spec: &mut Spec,
        base: &NameRef,
        kind: ObjectKind,
        type_at: usize,
    ) -> Parsed<ObjRef> {
        let Some(index) = base.single() else {
            return self.error_at(base.at, format!("`{base}`: a declaration is `name` or `name[N]`"));
        };
        let name = &base.name;
        if let Some(&i) = self.declared.get(name) {
            let existing = &spec.objects[i];
            let (
                ObjectKind::Untyped { size_bits: b0, paddr: p0 },
                ObjectKind::Untyped { size_bits: b1, paddr: p1 },
            ) = (&existing.kind, &kind)
            else {
                return self.error_at(base.at, format!("object `{name}` declared twice"));
            };
            let key = self.element(name, existing.count, index, base.at)?;
            if self.implicit.remove(name) {
                spec.objects[i].kind = kind;
            } else if (b1.is_some() || p1.is_some()) && (b0, p0) != (b1, p1) {
                return self
                    .error_at(type_at, format!("untyped `{name}` declared again with other parameters"));
            }
            return Ok(key);
        }
        let count = match index {
            None => None,
            Some((n, at)) => Some(self.narrow(n, at, "an array size")?),
        };
        spec.objects.push(Object { name: name.clone(), count, kind });
        self.declared.insert(name.clone(), spec.objects.len() - 1);
        Ok(ObjRef::named(name))
    }

    /// Records that `untyped` covers `object` (once), written at token `at`.
    fn cover(&mut self, spec: &mut Spec, untyped: &ObjRef, object: ObjRef, at: usize) -> Parsed<()> {
        if self.covered.contains(&(untyped.clone(), object.clone())) {
            return Ok(());
        }
        self.add_entries(1, at)?;
        self.covered.insert((untyped.clone(), object.clone()));
        spec.covers.entry(untyped.clone()).or_default().push(object);
        Ok(())
    }

    /// Cover references: `f` (the whole array if `f` is one), `f[i]`, `f[ranges]`, `f[]`;
    /// the names may be declared anywhere in the file.
    fn resolve_covers(&mut self, spec: &mut Spec) -> Parsed<()> {
        for (untyped, r) in core::mem::take(&mut self.pending_covers) {
            let declared = self.declared_count(spec, &r.name);
            let elements = match declared {
                Some(Some(_)) if r.is_all() => vec![None],
                _ => self.expand(
                    &r,
                    declared,
                    "declared in the file",
                    MAX_ENTRIES - self.entries,
                    (MAX_ENTRIES, ENTRY_LIMIT),
                )?,
            };
            for index in elements {
                self.cover(spec, &untyped, ObjRef { name: r.name.clone(), index }, r.at)?;
            }
        }
        Ok(())
    }

    /// `( … )` after an object type, if there.
    fn object_params(&mut self) -> Parsed<Params> {
        let mut params = Params::default();
        if !self.eat('(') {
            return Ok(params);
        }
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
                            params.size_bits = Some(n);
                        }
                        Some(Tok::Ident(s)) if s == "k" || s == "M" => {
                            let (unit, suffix) = if s == "k" { (1u64 << 10, "k") } else { (1 << 20, "M") };
                            let Some(size) = n.checked_mul(unit) else {
                                self.at -= 1;
                                return self.error(format!("frame size {n}{suffix} does not fit in 64 bits"));
                            };
                            self.at += 1;
                            params.frame_size = Some(size);
                        }
                        // A PCI address, `bus:dev.fun`.
                        Some(Tok::Punct(':')) => {
                            let at = self.at - 1;
                            self.at += 1;
                            let dev = self.number("a PCI device number")?;
                            self.punct('.')?;
                            let fun = self.number("a PCI function number")?;
                            if params.pci.replace((n, dev, fun)).is_some() {
                                return self.error_at(at, "a second PCI address".into());
                            }
                        }
                        _ => {
                            return self.error(
                                "expected `bits`, `k`, `M` or `:dev.fun` (a PCI address) after the number"
                                    .into(),
                            );
                        }
                    }
                }
                Some(Tok::Ident(key)) => {
                    self.at += 1;
                    self.punct(':')?;
                    let value = self.param_value()?;
                    if params.named.insert(key.clone(), value).is_some() {
                        return self.error(format!("parameter `{key}` given twice"));
                    }
                }
                _ => return self.error("expected an object parameter".into()),
            }
            if !self.eat(',') && self.peek() != Some(&Tok::Punct(')')) {
                return self.error("expected `,` or `)`".into());
            }
        }
        Ok(params)
    }

    fn param_value(&mut self) -> Parsed<ParamValue> {
        match self.peek().cloned() {
            Some(Tok::Number(n)) => {
                self.at += 1;
                Ok(ParamValue::Number(n))
            }
            Some(Tok::Ident(s)) if matches!(s.as_str(), "True" | "False" | "true" | "false") => {
                self.at += 1;
                Ok(ParamValue::Bool(s.eq_ignore_ascii_case("true")))
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

    /// The object a type keyword and its parameters describe; errors point at the keyword.
    fn kind(&mut self, keyword: &str, mut p: Params) -> Parsed<ObjectKind> {
        let params = &mut p.named;
        // `object_params` refused anything above 64, so the narrowing is exact.
        let size_bits = p.size_bits.map(|b| b as u32);
        let num = |params: &mut BTreeMap<String, ParamValue>, key: &str| -> Parsed<Option<u64>> {
            match params.remove(key) {
                None => Ok(None),
                Some(ParamValue::Number(n)) => Ok(Some(n)),
                Some(_) => self.error(format!("`{key}` takes a number")),
            }
        };
        let need = |params: &mut BTreeMap<String, ParamValue>, key: &str| -> Parsed<u64> {
            match num(params, key)? {
                Some(n) => Ok(n),
                None => self.error(format!("`{keyword}` needs `{key}: N`")),
            }
        };
        let flag = |params: &mut BTreeMap<String, ParamValue>, key: &str| -> Parsed<Option<bool>> {
            match params.remove(key) {
                None => Ok(None),
                Some(ParamValue::Bool(b)) => Ok(Some(b)),
                Some(_) => self.error(format!("`{key}` takes True or False")),
            }
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
            "cnode" => match size_bits {
                Some(size_bits) => ObjectKind::CNode { size_bits },
                None => return self.error("a cnode needs `N bits`".into()),
            },
            "ut" => ObjectKind::Untyped { size_bits, paddr: num(params, "paddr")? },
            "frame" => {
                let fill = match params.remove("fill") {
                    Some(ParamValue::Fill(f)) => f,
                    Some(ParamValue::List(l)) if l.is_empty() => Vec::new(),
                    None => Vec::new(),
                    Some(_) => return self.error("`fill` takes `[{…}, …]`".into()),
                };
                let Some(size) = p.frame_size.take() else {
                    return self.error("a frame needs a size (`4k`, `2M`)".into());
                };
                if !size.is_power_of_two() {
                    return self.error(format!("frame size {size} is not a power of two"));
                }
                ObjectKind::Frame { size, paddr: num(params, "paddr")?, fill }
            }
            "tcb" => {
                let resume = flag(params, "resume")?;
                let fpu_disabled = flag(params, "fpu_disabled")?;
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
                let restart_ms = num(params, "restart_ms")?;
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
                let ends_run = flag(params, "ends_run")?.unwrap_or(false);
                let quiet = flag(params, "quiet")?.unwrap_or(false);
                let reads_audit = flag(params, "reads_audit")?.unwrap_or(false);
                let mut t = TcbParams {
                    resume,
                    init,
                    elf,
                    lifetime,
                    ends_run,
                    quiet,
                    reads_audit,
                    fpu_disabled,
                    ..TcbParams::default()
                };
                for (key, field) in [
                    ("addr", &mut t.addr),
                    ("ip", &mut t.ip),
                    ("sp", &mut t.sp),
                    ("prio", &mut t.prio),
                    ("max_prio", &mut t.max_prio),
                    ("affinity", &mut t.affinity),
                    ("dom", &mut t.dom),
                    ("fault_ep", &mut t.fault_ep),
                    ("stack_pages", &mut t.stack_pages),
                ] {
                    *field = num(params, key)?;
                }
                ObjectKind::Tcb(t)
            }
            "io_ports" => match params.remove("ports") {
                Some(ParamValue::List(l)) if l.len() == 1 && l[0].1.is_some() => {
                    ObjectKind::IoPorts { first: l[0].0, last: l[0].1.unwrap_or(l[0].0) }
                }
                _ => return self.error("io_ports needs `ports: [first..last]`".into()),
            },
            "asid_pool" => ObjectKind::AsidPool { asid_high: num(params, "asid_high")? },
            "sc" => ObjectKind::SchedContext {
                period: num(params, "period")?,
                budget: num(params, "budget")?,
                data: num(params, "data")?,
                size_bits,
            },
            "ioapic_irq" => ObjectKind::IoApicIrq {
                ioapic: need(params, "ioapic_num")?,
                pin: need(params, "ioapic_pin")?,
                level: need(params, "ioapic_level")?,
                polarity: need(params, "ioapic_polarity")?,
            },
            "msi_irq" => ObjectKind::MsiIrq {
                handle: need(params, "msi_handle")?,
                bus: need(params, "msi_pci_bus")?,
                dev: need(params, "msi_pci_dev")?,
                fun: need(params, "msi_pci_fun")?,
            },
            "io_device" => {
                let domain_id = need(params, "domainID")?;
                let Some((bus, dev, fun)) = p.pci.take() else {
                    return self.error("`io_device` needs its PCI address, `bus:dev.fun`".into());
                };
                ObjectKind::IoDevice { domain_id, bus, dev, fun }
            }
            "io_pt" => ObjectKind::IoPageTable { level: need(params, "level")? },
            arm if ARM_TYPES.contains(&arm) => {
                return self.error(format!(
                    "`{arm}` is an object of seL4's Arm grammar; this reader takes the x86 one (`arch ia32`, `arch x86_64`)"
                ));
            }
            other => return self.error(format!("unknown object type `{other}`")),
        };
        if let Some(key) = params.keys().next() {
            return self.error(format!("`{keyword}` takes no parameter `{key}`"));
        }
        if size_bits.is_some()
            && !matches!(
                kind,
                ObjectKind::CNode { .. } | ObjectKind::Untyped { .. } | ObjectKind::SchedContext { .. }
            )
        {
            return self.error(format!("`{keyword}` takes no size in bits"));
        }
        if p.frame_size.is_some() {
            return self.error(format!("`{keyword}` takes no frame size"));
        }
        if p.pci.is_some() {
            return self.error(format!("`{keyword}` takes no PCI address"));
        }
        Ok(kind)
    }

    /// A slot: a number, or a TCB slot's name.
    fn slot(&mut self) -> Parsed<u64> {
        match self.next("a slot")? {
            Tok::Number(n) => Ok(n),
            Tok::Ident(s) => match TCB_SLOT_NAMES.iter().find(|(n, _)| *n == s) {
                Some(&(_, slot)) => Ok(slot),
                None => {
                    self.at -= 1;
                    self.error(format!("unknown slot name `{s}`"))
                }
            },
            other => {
                self.at -= 1;
                self.error(format!("expected a slot, found {other}"))
            }
        }
    }

    /// `(object, slot)`.
    fn cap_ref(&mut self) -> Parsed<CapRef> {
        self.punct('(')?;
        let r = self.name_ref("an object name")?;
        let Some(index) = r.single() else {
            return self.error_at(r.at, format!("`{r}`: a capability's place is in one object"));
        };
        let index = match index {
            None => None,
            Some((i, at)) => Some(self.narrow(i, at, "an index")?),
        };
        self.punct(',')?;
        let slot = self.slot()?;
        self.punct(')')?;
        Ok(CapRef { object: ObjRef { name: r.name, index }, slot })
    }

    /// A capability's place: `(object, slot)` or its name.
    fn place(&mut self) -> Parsed<Place> {
        if self.peek() == Some(&Tok::Punct('(')) {
            return Ok(Place::At(self.cap_ref()?));
        }
        let r = self.name_ref("a capability name or `(object, slot)`")?;
        match r.single() {
            Some(None) => Ok(Place::Named(ObjRef::named(&r.name))),
            Some(Some((i, at))) => {
                Ok(Place::Named(ObjRef::element(&r.name, self.narrow(i, at, "an index")?)))
            }
            None => self.error_at(r.at, format!("`{r}`: name one capability")),
        }
    }

    /// Gives capability `name` to the slot `place`.
    fn name_cap(&mut self, name: ObjRef, place: CapRef, at: usize) -> Parsed<()> {
        if self.cap_names.contains_key(&name) {
            return self.error_at(at, format!("capability name `{name}` given twice"));
        }
        self.add_entries(1, at)?;
        self.cap_names.insert(name, place);
        Ok(())
    }

    /// `name = (object, slot)` in the caps section.
    fn cap_name_declaration(&mut self) -> Parsed<()> {
        let at = self.at;
        let name = self.ident("a capability name")?;
        self.punct('=')?;
        let place = self.cap_ref()?;
        if self.cap_arrays.insert(name.clone(), None).is_some() {
            return self.error_at(at, format!("capability name `{name}` given twice"));
        }
        self.name_cap(ObjRef::named(&name), place, at)
    }

    /// Whether a capability name (`name =`, `name[] =`) is ahead.
    fn cap_name_ahead(&self) -> bool {
        let tok = |i: usize| self.tokens.get(self.at + i).map(|t| &t.tok);
        if !matches!(tok(0), Some(Tok::Ident(_))) {
            return false;
        }
        let mut i = 1;
        if tok(i) == Some(&Tok::Punct('[')) {
            while tok(i) != Some(&Tok::Punct(']')) {
                if tok(i).is_none() {
                    return false;
                }
                i += 1;
            }
            i += 1;
        }
        tok(i) == Some(&Tok::Punct('='))
    }

    /// `container { slot: target (params) … }`; the container may be a range of an array,
    /// each element getting the same capabilities.
    fn cap_block(&mut self, spec: &mut Spec) -> Parsed<()> {
        let head = self.name_ref("a container")?;
        let declared = self.declared_count(spec, &head.name);
        let containers = if head.ranges.is_some() {
            let room = MAX_ENTRIES - self.entries;
            let containers =
                self.expand(&head, declared, "declared before it", room, (MAX_ENTRIES, ENTRY_LIMIT))?;
            self.add_entries(containers.len(), head.at)?;
            containers
        } else {
            vec![None]
        };
        self.punct('{')?;
        let mut items = Vec::new();
        let mut slots = Slots { next: Some(0), used: BTreeSet::new() };
        let mut block_caps = 0usize;
        while !self.eat('}') {
            let room = MAX_CAPS.saturating_sub(self.caps + block_caps);
            let line = self.cap_line(spec, &head, &mut slots, room)?;
            block_caps += line.iter().filter(|i| matches!(i, Item::Cap { .. } | Item::Copy { .. })).count();
            items.extend(line);
        }
        match block_caps.checked_mul(containers.len()).and_then(|n| n.checked_add(self.caps)) {
            Some(total) if total <= MAX_CAPS => self.caps = total,
            _ => {
                return self
                    .error_at(head.at, format!("more than {MAX_CAPS} {CAP_LIMIT} (the reader's limit)"));
            }
        }
        for index in containers {
            self.fill(spec, ObjRef { name: head.name.clone(), index }, &items)?;
        }
        Ok(())
    }

    /// One line of a capability block: `[slot:] [name =] target [(params)] [- child_of
    /// place] [;]`, the target a name (with ranges: one capability a slot) or a copy
    /// (`<name>`). At most `room` capabilities.
    fn cap_line(&mut self, spec: &Spec, head: &NameRef, slots: &mut Slots, room: usize) -> Parsed<Vec<Item>> {
        if matches!(self.peek_at(1), Some(Tok::Punct(':'))) {
            slots.next = Some(self.slot()?);
            self.punct(':')?;
        }
        let name = if self.cap_name_ahead() {
            let name = self.name_ref("a capability name")?;
            self.punct('=')?;
            Some(name)
        } else {
            None
        };
        let at = self.at;
        let mut items = Vec::new();
        if self.eat('<') {
            let source = self.name_ref("a capability name")?;
            self.punct('>')?;
            let (params, masked) =
                if self.eat('(') { self.cap_params()? } else { (CapParams::default(), None) };
            if params != CapParams::default() {
                return self.error_at(at, "a copy (`<name>`) takes `masked:` only".into());
            }
            let declared = self.cap_arrays.get(&source.name).copied();
            let scope = "of capabilities named before it";
            for index in self.expand(&source, declared, scope, room, (MAX_CAPS, CAP_LIMIT))? {
                let slot = slots.take(self, head, at)?;
                let source = ObjRef { name: source.name.clone(), index };
                items.push(Item::Copy { slot, source, masked, at });
            }
        } else {
            let target = self.name_ref("a capability target")?;
            let (params, masked) =
                if self.eat('(') { self.cap_params()? } else { (CapParams::default(), None) };
            if masked.is_some() {
                return self.error_at(at, "`masked:` goes with a copy (`<name>`) only".into());
            }
            let special = match (target.name.as_str(), &target.ranges) {
                ("irq_control", None) => Some(Target::IrqControl),
                ("asid_control", None) => Some(Target::AsidControl),
                ("io_space_master", None) => Some(Target::IoSpaceMaster),
                ("domain", None) => Some(Target::Domain),
                ("sched_control", None) => Some(Target::SchedControl),
                _ => None,
            };
            let targets: Vec<Target> = match special {
                Some(t) => vec![t],
                None => {
                    let declared = self.declared_count(spec, &target.name);
                    self.expand(&target, declared, "declared before it", room, (MAX_CAPS, CAP_LIMIT))?
                        .into_iter()
                        .map(|index| Target::Object(ObjRef { name: target.name.clone(), index }))
                        .collect()
                }
            };
            for target in targets {
                let slot = slots.take(self, head, at)?;
                items.push(Item::Cap { slot, cap: Cap { target, params: params.clone() }, at });
            }
        }
        // The slots of this line's capabilities are consecutive.
        let first = match items.first() {
            Some(Item::Cap { slot, .. } | Item::Copy { slot, .. }) => Some(*slot),
            _ => None,
        };
        let count = items.len();
        if let Some(name) = name {
            items.extend(self.cap_line_names(&name, first.unwrap_or(0), count)?);
        }
        if self.peek() == Some(&Tok::Punct('-'))
            && matches!(self.peek_at(1), Some(Tok::Ident(s)) if s == "child_of")
        {
            self.at += 2;
            let parent = self.place()?;
            match (count, first) {
                (1, Some(slot)) => items.push(Item::Derive { slot, parent, at }),
                _ => return self.error_at(at, "`- child_of` needs a single capability".into()),
            }
        }
        self.eat(';');
        Ok(items)
    }

    /// The name a line gives its `count` capabilities from slot `first`: `name` for one,
    /// `name[]` for each of them.
    fn cap_line_names(&mut self, name: &NameRef, first: u64, count: usize) -> Parsed<Vec<Item>> {
        let given_twice =
            |parser: &Self| parser.error_at(name.at, format!("capability name `{}` given twice", name.name));
        match &name.ranges {
            None if count == 1 => {
                if self.cap_arrays.insert(name.name.clone(), None).is_some() {
                    return given_twice(self);
                }
                Ok(vec![Item::Name { name: ObjRef::named(&name.name), slot: first, at: name.at }])
            }
            None => self
                .error_at(name.at, format!("one name for {count} capabilities: write `{}[] = …`", name.name)),
            Some(_) if name.is_all() => {
                // At most MAX_CAPS, so it fits; the slots are those the line filled.
                let size = count as u32;
                if self.cap_arrays.insert(name.name.clone(), Some(size)).is_some() {
                    return given_twice(self);
                }
                Ok((0..size)
                    .map(|i| Item::Name {
                        name: ObjRef::element(&name.name, i),
                        slot: first + u64::from(i),
                        at: name.at,
                    })
                    .collect())
            }
            Some(_) => self.error_at(name.at, format!("`{name}`: a capability name takes `[]` or nothing")),
        }
    }

    /// Puts what a capability block gives into `container`.
    fn fill(&mut self, spec: &mut Spec, container: ObjRef, items: &[Item]) -> Parsed<()> {
        spec.caps.entry(container.clone()).or_default();
        let place = |slot: u64| CapRef { object: container.clone(), slot };
        for item in items {
            if let Item::Cap { slot, at, .. } | Item::Copy { slot, at, .. } = item {
                let filled = spec.caps.get(&container).is_some_and(|s| s.contains_key(slot));
                if filled || self.copies.contains_key(&place(*slot)) {
                    return self.error_at(*at, format!("slot {slot} of `{container}` filled twice"));
                }
            }
            match item {
                Item::Cap { slot, cap, .. } => {
                    spec.caps.entry(container.clone()).or_default().insert(*slot, cap.clone());
                }
                Item::Copy { slot, source, masked, at } => {
                    let copy = PendingCopy { source: source.clone(), masked: *masked, at: *at };
                    self.copies.insert(place(*slot), copy);
                }
                Item::Name { name, slot, at } => self.name_cap(name.clone(), place(*slot), *at)?,
                Item::Derive { slot, parent, at } => {
                    self.add_entries(1, *at)?;
                    let child = Place::At(place(*slot));
                    self.derivations.push(Derivation { child, parent: parent.clone(), at: *at });
                }
            }
        }
        Ok(())
    }

    /// After `(`: a capability's parameters up to `)`, and `masked:` rights apart (they go
    /// with copies only).
    fn cap_params(&mut self) -> Parsed<(CapParams, Option<Rights>)> {
        let mut p = CapParams::default();
        let mut masked: Option<Rights> = None;
        let rights_of = |word: &str| -> Option<Rights> {
            if word.is_empty() || !word.chars().all(|c| "RWGPX".contains(c)) {
                return None;
            }
            let mut r = Rights::NONE;
            for c in word.chars() {
                match c {
                    'R' => r.read = true,
                    'W' => r.write = true,
                    'G' | 'X' => r.grant = true,
                    _ => r.grant_reply = true,
                }
            }
            Some(r)
        };
        loop {
            let key = self.ident("a capability parameter")?;
            match rights_of(&key) {
                Some(r) if self.peek() != Some(&Tok::Punct(':')) => {
                    p.rights = Rights {
                        read: p.rights.read || r.read,
                        write: p.rights.write || r.write,
                        grant: p.rights.grant || r.grant,
                        grant_reply: p.rights.grant_reply || r.grant_reply,
                    };
                }
                _ => match key.as_str() {
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
                    "mapping" => {
                        self.punct(':')?;
                        p.mapping = Some(self.cap_ref()?);
                    }
                    "masked" => {
                        self.punct(':')?;
                        let word = self.ident("rights")?;
                        let Some(r) = rights_of(&word) else {
                            self.at -= 1;
                            return self
                                .error(format!("`masked:` takes rights (`R`, `W`, `G`, `P`), not `{word}`"));
                        };
                        let m = masked.unwrap_or(Rights {
                            read: true,
                            write: true,
                            grant: true,
                            grant_reply: true,
                        });
                        masked = Some(Rights {
                            read: m.read && r.read,
                            write: m.write && r.write,
                            grant: m.grant && r.grant,
                            grant_reply: m.grant_reply && r.grant_reply,
                        });
                    }
                    other => {
                        self.at -= 1;
                        return self.error(format!("unknown capability parameter `{other}`"));
                    }
                },
            }
            if self.eat(')') {
                return Ok((p, masked));
            }
            self.punct(',')?;
        }
    }

    /// `irq maps { [N:] irq_object … }`; ranges of an array fill consecutive numbers.
    fn irq_maps(&mut self, spec: &mut Spec) -> Parsed<()> {
        self.punct('{')?;
        // `None` once the numbering has run past the largest number.
        let mut next = Some(0u64);
        while !self.eat('}') {
            if matches!(self.peek(), Some(Tok::Number(_))) {
                next = Some(self.number("an IRQ number")?);
                self.punct(':')?;
            }
            let r = self.name_ref("an IRQ object")?;
            let declared = self.declared_count(spec, &r.name);
            let room = MAX_ENTRIES - self.entries;
            let elements =
                self.expand(&r, declared, "declared before it", room, (MAX_ENTRIES, ENTRY_LIMIT))?;
            self.add_entries(elements.len(), r.at)?;
            for index in elements {
                let Some(number) = next else {
                    return self.error_at(r.at, "IRQ numbers run past 2^64".into());
                };
                if spec.irqs.insert(number, ObjRef { name: r.name.clone(), index }).is_some() {
                    return self.error_at(r.at, format!("IRQ {number} mapped twice"));
                }
                next = number.checked_add(1);
            }
            self.eat(';');
        }
        Ok(())
    }

    /// One parent of `cdt { }` and its children in braces; a child may have its own.
    fn derivation_tree(&mut self, depth: usize) -> Parsed<()> {
        let parent_at = self.at;
        let parent = self.place()?;
        if depth >= MAX_NESTING {
            return self
                .error_at(parent_at, format!("the derivation tree nests more than {MAX_NESTING} deep"));
        }
        self.punct('{')?;
        while !self.eat('}') {
            let at = self.at;
            let child = self.place()?;
            self.add_entries(1, at)?;
            self.derivations.push(Derivation { child, parent: parent.clone(), at });
            if self.peek() == Some(&Tok::Punct('{')) {
                self.at = at;
                self.derivation_tree(depth + 1)?;
            }
            self.eat(';');
        }
        Ok(())
    }

    /// `domains { schedule: [(domain, duration), …] domain_set_start: N|no_start index_shift: N }`.
    fn domains(&mut self, spec: &mut Spec) -> Parsed<()> {
        self.punct('{')?;
        let mut domains = spec.domains.take().unwrap_or_default();
        while !self.eat('}') {
            let key_at = self.at;
            let key = self.ident("`schedule`, `domain_set_start` or `index_shift`")?;
            if !["schedule", "domain_set_start", "index_shift"].contains(&key.as_str()) {
                return self.error_at(
                    key_at,
                    format!("unknown domains item `{key}` (schedule, domain_set_start, index_shift)"),
                );
            }
            if !self.domain_items.insert(key.clone()) {
                return self.error_at(key_at, format!("`{key}` given twice"));
            }
            self.punct(':')?;
            match key.as_str() {
                "schedule" => {
                    self.punct('[')?;
                    loop {
                        let at = self.at;
                        self.punct('(')?;
                        let domain = self.number("a domain")?;
                        self.punct(',')?;
                        let duration = self.number("a duration")?;
                        self.punct(')')?;
                        self.add_entries(1, at)?;
                        domains.schedule.push((domain, duration));
                        let comma = self.eat(',');
                        if self.eat(']') {
                            break;
                        }
                        if !comma {
                            return self.error("expected `,` or `]`".into());
                        }
                    }
                }
                "domain_set_start" => {
                    domains.start = if matches!(self.peek(), Some(Tok::Ident(s)) if s == "no_start") {
                        self.at += 1;
                        None
                    } else {
                        Some(self.number("a schedule index or `no_start`")?)
                    };
                }
                _ => domains.index_shift = self.number("an index shift")?,
            }
        }
        spec.domains = Some(domains);
        Ok(())
    }

    /// Copies take the named capability's target and parameters, their rights cut by
    /// `masked:`; a copy of a copy follows the chain (a cycle is refused).
    fn resolve_copies(&mut self, spec: &mut Spec) -> Parsed<()> {
        let copies = core::mem::take(&mut self.copies);
        for dest in copies.keys() {
            let filled = |spec: &Spec, place: &CapRef| {
                spec.caps.get(&place.object).and_then(|s| s.get(&place.slot)).cloned()
            };
            if filled(spec, dest).is_some() {
                continue;
            }
            let mut chain = vec![dest];
            let mut seen = BTreeSet::from([dest]);
            let mut cap = loop {
                let copy = &copies[*chain.last().unwrap_or(&dest)];
                let Some(source) = self.cap_names.get(&copy.source) else {
                    return self.error_at(copy.at, format!("no capability named `{}`", copy.source));
                };
                if let Some(cap) = filled(spec, source) {
                    break cap;
                }
                match copies.get_key_value(source) {
                    Some((place, _)) if seen.insert(place) => chain.push(place),
                    Some(_) => {
                        return self.error_at(
                            copy.at,
                            format!("copies of capabilities go round in a cycle through {source}"),
                        );
                    }
                    None => {
                        return self.error_at(
                            copy.at,
                            format!("capability `{}` is {source}, which holds no capability", copy.source),
                        );
                    }
                }
            };
            for place in chain.iter().rev() {
                if let Some(m) = copies[*place].masked {
                    let r = cap.params.rights;
                    cap.params.rights = Rights {
                        read: r.read && m.read,
                        write: r.write && m.write,
                        grant: r.grant && m.grant,
                        grant_reply: r.grant_reply && m.grant_reply,
                    };
                }
                spec.caps.entry(place.object.clone()).or_default().insert(place.slot, cap.clone());
            }
        }
        Ok(())
    }

    fn resolve_derivations(&mut self, spec: &mut Spec) -> Parsed<()> {
        for d in core::mem::take(&mut self.derivations) {
            let place = |p: &Place| -> Parsed<CapRef> {
                match p {
                    Place::At(c) => Ok(c.clone()),
                    Place::Named(n) => match self.cap_names.get(n) {
                        Some(c) => Ok(c.clone()),
                        None => self.error_at(d.at, format!("no capability named `{n}`")),
                    },
                }
            };
            let (child, parent) = (place(&d.child)?, place(&d.parent)?);
            if spec.cdt.insert(child.clone(), parent).is_some() {
                return self.error_at(d.at, format!("{child} has two parents in the derivation tree"));
            }
        }
        Ok(())
    }
}
