//! Subscription filters: a JSON document that chooses which incoming webhook requests a
//! subscription receives.
//!
//! A filter is a JSON object. Its keys are request parts, each holding a *matcher* for that
//! part, and the logical operators `$and`, `$or` (non-empty arrays of filters) and `$not` (one
//! filter). Every key must hold; `{}` matches everything.
//!
//! - `body`: the body parsed as JSON; a body that is not JSON is missing (see below).
//! - `headers`: an object of lower-case header names; the filter's header names (also inside
//!   `$and`, `$or`, `$not`) are lower-cased when it is parsed, so
//!   `{"headers": {"X-GitHub-Event": "push"}}` matches the header `x-github-event`.
//! - `query`: an object of query parameters (string values); names are case-sensitive.
//! - `path`: the path after the ingest token, with its leading `/` (`""` when there is none).
//!
//! A matcher is:
//!
//! - a literal (string, number, bool, null): equality; numbers compare as numbers (`1` = `1.0`);
//! - an object without `$` keys: a subset; each key must be present and match, extra keys in
//!   the request are ignored;
//! - an array: the request must hold an array with, for every filter element (itself a
//!   matcher), some element that matches it, in any order; it never matches a non-array;
//! - an object of operators, which must all hold (mixing operators and plain keys is refused):
//!   `$eq`, `$neq` (exact equality: no subset for objects, arrays in order), `$gt`, `$gte`,
//!   `$lt`, `$lte` (numbers numerically, strings lexicographically, mixed types never), `$in`,
//!   `$nin` (an array of values), `$startsWith`, `$endsWith` (a string), `$contains` (a string:
//!   contained in a string, or equal to an element of an array), `$exist` (true or false; `null`
//!   is present), `$and`, `$or` (non-empty arrays of matchers for the same value) and `$not` (a
//!   matcher).
//!
//! Where the request holds an array and the filter does not, the array matches when any element
//! does: `{"body": {"tags": "urgent"}}` matches `{"tags": ["a", "urgent"]}`. This is one level
//! deep: arrays of arrays are not flattened. It applies to literals, objects, `$eq`, the
//! comparisons, `$in`, `$startsWith` and `$endsWith`; `$neq` and `$nin` are their negations,
//! so they fail when any element is excluded.
//!
//! A missing value (absent field or header, or a body that is not JSON) matches nothing except
//! `{"$exist": false}`, `$nin`, `$neq`, and a `$not` of something that does not match it: a
//! missing value is not equal to anything, so it is not excluded by anything either.
//!
//! Keys starting with `$` are always operators, so a request field such as `$schema` cannot be
//! matched by name. A filter is validated once, by [`Filter::parse`], within [`MAX_DEPTH`],
//! [`MAX_BYTES`] and [`MAX_NODES`]; evaluating it never fails.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::io;

use serde_json::{Map, Number, Value};

/// The deepest a filter may nest, counting every JSON object and array, the filter itself being
/// level 1: it bounds the recursion of parsing and of evaluation.
pub const MAX_DEPTH: usize = 32;

/// The largest a filter may be, in bytes of compact JSON, so stored filters stay small.
pub const MAX_BYTES: usize = 16 * 1024;

/// The most matcher nodes (every filter object and every value used as a condition) a filter may
/// have, bounding the work of evaluating it against each request.
pub const MAX_NODES: usize = 1_000;

/// The longest a value shown in an explanation may be, in bytes, before it is cut with `…`.
const SHOWN_BYTES: usize = 80;

/// The longest a summary may be, in characters, `…` included.
const SUMMARY_CHARS: usize = 80;

/// The parts of an incoming request that a filter looks at.
#[derive(Debug, Clone, Copy)]
pub struct FilterInput<'a> {
    /// The body parsed as JSON, `None` when it is not JSON.
    pub body: Option<&'a Value>,
    /// An object: lower-case header name to string value.
    pub headers: &'a Value,
    /// An object: query parameter to string value.
    pub query: &'a Value,
    /// The path after the ingest token, with its leading `/`; `""` when there is none.
    pub path: &'a str,
}

/// A query as filters see it: an object of parameter names to decoded values; of a repeated
/// name, the first value.
pub fn query_object(query: &str) -> Value {
    let mut object = Map::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        object
            .entry(name.into_owned())
            .or_insert_with(|| Value::String(value.into_owned()));
    }
    Value::Object(object)
}

/// Why a filter document is refused: where it is wrong and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", shown_path(.path), .message)]
pub struct FilterError {
    /// A JSON Pointer to the bad part of the filter; empty for the whole filter (shown as `/`).
    pub path: String,
    /// What is wrong with it, for the user who wrote it.
    pub message: String,
}

/// The outcome of a filter on one request, with the reason it failed, for "Test filter".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Whether the filter matched; always what [`Filter::matches`] says.
    pub matched: bool,
    /// When it did not match: the path in the filter that failed and why.
    pub mismatch: Option<String>,
}

/// A validated filter, ready to evaluate, that keeps the document as written.
#[derive(Debug, Clone)]
pub struct Filter {
    json: Value,
    conditions: Conditions,
}

impl Filter {
    /// Validates a filter document, once, when it is saved, so evaluation never meets a bad one.
    pub fn parse(json: &Value) -> Result<Filter, FilterError> {
        // Depth first: everything after it recurses, and may then recurse at most MAX_DEPTH deep.
        check_depth(json)?;
        check_size(json)?;
        let conditions = Parser::default().conditions(json)?;
        Ok(Filter {
            json: json.clone(),
            conditions,
        })
    }

    /// The filter `{}`, which every request passes: a subscription's without one.
    pub fn everything() -> Filter {
        Filter {
            json: Value::Object(Map::new()),
            conditions: Conditions(Vec::new()),
        }
    }

    /// The document as written, to store and to show.
    pub fn as_json(&self) -> &Value {
        &self.json
    }

    /// Whether a request passes the filter.
    pub fn matches(&self, input: &FilterInput<'_>) -> bool {
        self.conditions.check(input, &mut Silent)
    }

    /// Whether a request passes the filter and, when it does not, the first reason why.
    pub fn explain(&self, input: &FilterInput<'_>) -> Explanation {
        // The same evaluation as `matches`, only recording reasons, so the two cannot disagree.
        let mut recorder = Recorder::default();
        let matched = self.conditions.check(input, &mut recorder);
        Explanation {
            matched,
            mismatch: if matched { None } else { recorder.mismatch },
        }
    }

    /// A one-line description for a list of subscriptions, such as `body.type = "invoice.paid"`.
    pub fn summary(&self) -> String {
        let mut leaves = Vec::new();
        summarize_conditions(&self.conditions, &mut leaves);
        let text = if leaves.len() > 1 {
            format!("{} conditions", leaves.len())
        } else {
            leaves.pop().unwrap_or_else(|| "everything".to_owned())
        };
        cut(text, SUMMARY_CHARS)
    }
}

// ---------------------------------------------------------------------------------------------
// The parsed tree.

/// Whole-request conditions, all of which must hold.
#[derive(Debug, Clone)]
struct Conditions(Vec<Condition>);

/// One key of a whole-request filter.
#[derive(Debug, Clone)]
enum Condition {
    Part(Part, Matcher),
    And(Vec<Conditions>),
    Or(Vec<Conditions>),
    Not(Box<Conditions>),
}

/// The part of a request a matcher applies to.
#[derive(Debug, Clone, Copy)]
enum Part {
    Body,
    Headers,
    Query,
    Path,
}

/// A test of one value of the request.
#[derive(Debug, Clone)]
enum Matcher {
    /// A literal string, number, bool or null.
    Equals(Value),
    /// A subset: each named field must match.
    Fields(Vec<(String, Matcher)>),
    /// An array: each element must match some element of the request's array.
    Elements(Vec<Matcher>),
    /// An object of operators, all of which must hold.
    Operators(Vec<Operator>),
}

/// One operator of an operator object.
#[derive(Debug, Clone)]
enum Operator {
    Eq(Value),
    Neq(Value),
    Compare(Comparison, Bound),
    In(Vec<Value>),
    Nin(Vec<Value>),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Exist(bool),
    And(Vec<Matcher>),
    Or(Vec<Matcher>),
    Not(Box<Matcher>),
}

/// `$gt`, `$gte`, `$lt` or `$lte`.
#[derive(Debug, Clone, Copy)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// The operand of a comparison: only numbers and strings are ordered.
#[derive(Debug, Clone)]
enum Bound {
    Number(Number),
    Text(String),
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Body => "body",
            Part::Headers => "headers",
            Part::Query => "query",
            Part::Path => "path",
        }
    }

    fn subject<'a>(self, input: &FilterInput<'a>) -> Option<Subject<'a>> {
        match self {
            Part::Body => input.body.map(Subject::Json),
            Part::Headers => Some(Subject::Json(input.headers)),
            Part::Query => Some(Subject::Json(input.query)),
            Part::Path => Some(Subject::Text(input.path)),
        }
    }
}

impl Operator {
    fn name(&self) -> &'static str {
        match self {
            Operator::Eq(_) => "$eq",
            Operator::Neq(_) => "$neq",
            Operator::Compare(comparison, _) => comparison.name(),
            Operator::In(_) => "$in",
            Operator::Nin(_) => "$nin",
            Operator::StartsWith(_) => "$startsWith",
            Operator::EndsWith(_) => "$endsWith",
            Operator::Contains(_) => "$contains",
            Operator::Exist(_) => "$exist",
            Operator::And(_) => "$and",
            Operator::Or(_) => "$or",
            Operator::Not(_) => "$not",
        }
    }
}

impl Comparison {
    fn name(self) -> &'static str {
        match self {
            Comparison::Gt => "$gt",
            Comparison::Gte => "$gte",
            Comparison::Lt => "$lt",
            Comparison::Lte => "$lte",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Comparison::Gt => "greater than",
            Comparison::Gte => "greater than or equal to",
            Comparison::Lt => "less than",
            Comparison::Lte => "less than or equal to",
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Gte => ">=",
            Comparison::Lt => "<",
            Comparison::Lte => "<=",
        }
    }

    fn holds(self, subject: Subject<'_>, bound: &Bound) -> bool {
        let ordering = match bound {
            Bound::Number(bound) => subject.number().and_then(|n| compare_numbers(n, bound)),
            Bound::Text(bound) => subject.text().map(|text| text.cmp(bound.as_str())),
        };
        match (self, ordering) {
            (_, None) => false,
            (Comparison::Gt, Some(ordering)) => ordering == Ordering::Greater,
            (Comparison::Gte, Some(ordering)) => ordering != Ordering::Less,
            (Comparison::Lt, Some(ordering)) => ordering == Ordering::Less,
            (Comparison::Lte, Some(ordering)) => ordering != Ordering::Greater,
        }
    }
}

impl Bound {
    fn show(&self) -> String {
        match self {
            Bound::Number(number) => number.to_string(),
            Bound::Text(text) => show_text(text),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Bound::Number(_) => "a number",
            Bound::Text(_) => "a string",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// Refuses a document nested deeper than MAX_DEPTH. It walks with an explicit stack because the
/// document may be far deeper than our own stack could recurse.
fn check_depth(root: &Value) -> Result<(), FilterError> {
    let Some(children) = Children::of(root) else {
        return Ok(());
    };
    // `open` holds the containers being walked; `trail` the keys leading to the innermost.
    let mut open = vec![children];
    let mut trail: Vec<Segment<'_>> = Vec::new();
    while let Some(children) = open.last_mut() {
        match children.next() {
            None => {
                open.pop();
                trail.pop();
            }
            Some((segment, child)) => {
                if let Some(grandchildren) = Children::of(child) {
                    trail.push(segment);
                    if open.len() == MAX_DEPTH {
                        let mut path = String::new();
                        for segment in &trail {
                            push_segment(&mut path, *segment);
                        }
                        return Err(FilterError {
                            path,
                            message: format!("nests deeper than {MAX_DEPTH} levels"),
                        });
                    }
                    open.push(grandchildren);
                }
            }
        }
    }
    Ok(())
}

/// Refuses a document over MAX_BYTES, serializing no more of it than that.
fn check_size(json: &Value) -> Result<(), FilterError> {
    let mut measured = Capped::new(MAX_BYTES);
    match serde_json::to_writer(&mut measured, json) {
        Ok(()) => Ok(()),
        Err(_) => Err(FilterError {
            path: String::new(),
            message: format!("is larger than {MAX_BYTES} bytes (as compact JSON)"),
        }),
    }
}

/// The entries of a JSON object or array, as path segments and values.
enum Children<'a> {
    Object(serde_json::map::Iter<'a>),
    Array(std::iter::Enumerate<std::slice::Iter<'a, Value>>),
}

impl<'a> Children<'a> {
    fn of(value: &'a Value) -> Option<Self> {
        match value {
            Value::Object(object) => Some(Children::Object(object.iter())),
            Value::Array(items) => Some(Children::Array(items.iter().enumerate())),
            _ => None,
        }
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = (Segment<'a>, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Children::Object(entries) => entries
                .next()
                .map(|(key, value)| (Segment::Key(key), value)),
            Children::Array(items) => items
                .next()
                .map(|(index, value)| (Segment::Index(index), value)),
        }
    }
}

/// Builds the tree from a document already known to be within MAX_DEPTH and MAX_BYTES.
#[derive(Default)]
struct Parser {
    /// Matcher nodes built so far, against MAX_NODES.
    nodes: usize,
    /// The JSON Pointer of the value being parsed, for errors.
    path: String,
}

impl Parser {
    fn error(&self, message: impl Into<String>) -> FilterError {
        FilterError {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn count_node(&mut self) -> Result<(), FilterError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.error(format!("the filter has more than {MAX_NODES} conditions")));
        }
        Ok(())
    }

    /// Runs `parse` with `segment` added to the path.
    fn within<T>(
        &mut self,
        segment: Segment<'_>,
        parse: impl FnOnce(&mut Self) -> Result<T, FilterError>,
    ) -> Result<T, FilterError> {
        let mark = self.path.len();
        push_segment(&mut self.path, segment);
        let parsed = parse(self);
        self.path.truncate(mark);
        parsed
    }

    /// Parses a non-empty array, each element with `parse`.
    fn list<T>(
        &mut self,
        operand: &Value,
        mut parse: impl FnMut(&mut Self, &Value) -> Result<T, FilterError>,
    ) -> Result<Vec<T>, FilterError> {
        match operand {
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(index, item)| self.within(Segment::Index(index), |p| parse(p, item)))
                .collect(),
            _ => Err(self.error("expects a non-empty array")),
        }
    }

    /// A whole-request filter: the document itself, or an operand of a top-level operator.
    fn conditions(&mut self, value: &Value) -> Result<Conditions, FilterError> {
        self.count_node()?;
        let Value::Object(object) = value else {
            return Err(self.error("expects a filter object"));
        };
        let conditions = object
            .iter()
            .map(|(key, operand)| self.within(Segment::Key(key), |p| p.condition(key, operand)))
            .collect::<Result<_, _>>()?;
        Ok(Conditions(conditions))
    }

    fn condition(&mut self, key: &str, operand: &Value) -> Result<Condition, FilterError> {
        Ok(match key {
            "body" => Condition::Part(Part::Body, self.matcher(operand, false)?),
            "headers" => Condition::Part(Part::Headers, self.matcher(operand, true)?),
            "query" => Condition::Part(Part::Query, self.matcher(operand, false)?),
            "path" => Condition::Part(Part::Path, self.matcher(operand, false)?),
            "$and" => Condition::And(self.list(operand, Self::conditions)?),
            "$or" => Condition::Or(self.list(operand, Self::conditions)?),
            "$not" => Condition::Not(Box::new(self.conditions(operand)?)),
            _ if key.starts_with('$') => {
                return Err(self.error("unknown operator (the top level takes $and, $or and $not)"));
            }
            _ => return Err(self.error("unknown part (use body, headers, query or path)")),
        })
    }

    /// A matcher; `header_names` lower-cases field names, because header names are compared
    /// lower-cased. It carries through logical operators, which test the same value.
    fn matcher(&mut self, value: &Value, header_names: bool) -> Result<Matcher, FilterError> {
        self.count_node()?;
        match value {
            Value::Array(items) => {
                let elements = items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| {
                        self.within(Segment::Index(index), |p| p.matcher(item, false))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Matcher::Elements(elements))
            }
            Value::Object(object) => self.object(object, header_names),
            literal => Ok(Matcher::Equals(literal.clone())),
        }
    }

    fn object(
        &mut self,
        object: &Map<String, Value>,
        header_names: bool,
    ) -> Result<Matcher, FilterError> {
        let operator = object.keys().find(|key| key.starts_with('$'));
        let plain = object.keys().find(|key| !key.starts_with('$'));
        match (operator, plain) {
            (Some(operator), Some(plain)) => Err(self.error(format!(
                "mixes operators ({operator}) with plain keys ({plain}); use one or the other"
            ))),
            (Some(_), None) => {
                let operators = object
                    .iter()
                    .map(|(key, operand)| {
                        self.within(Segment::Key(key), |p| {
                            p.operator(key, operand, header_names)
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Matcher::Operators(operators))
            }
            (None, _) => {
                let fields = object
                    .iter()
                    .map(|(key, value)| {
                        let name = if header_names {
                            key.to_ascii_lowercase()
                        } else {
                            key.clone()
                        };
                        let matcher =
                            self.within(Segment::Key(key), |p| p.matcher(value, false))?;
                        Ok((name, matcher))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Matcher::Fields(fields))
            }
        }
    }

    fn operator(
        &mut self,
        key: &str,
        operand: &Value,
        header_names: bool,
    ) -> Result<Operator, FilterError> {
        Ok(match key {
            "$eq" => Operator::Eq(operand.clone()),
            "$neq" => Operator::Neq(operand.clone()),
            "$gt" => Operator::Compare(Comparison::Gt, self.bound(operand)?),
            "$gte" => Operator::Compare(Comparison::Gte, self.bound(operand)?),
            "$lt" => Operator::Compare(Comparison::Lt, self.bound(operand)?),
            "$lte" => Operator::Compare(Comparison::Lte, self.bound(operand)?),
            "$in" => Operator::In(self.values(operand)?),
            "$nin" => Operator::Nin(self.values(operand)?),
            "$startsWith" => Operator::StartsWith(self.text(operand)?),
            "$endsWith" => Operator::EndsWith(self.text(operand)?),
            "$contains" => Operator::Contains(self.text(operand)?),
            "$exist" => match operand {
                Value::Bool(present) => Operator::Exist(*present),
                _ => return Err(self.error("expects true or false")),
            },
            "$and" => Operator::And(self.list(operand, |p, item| p.matcher(item, header_names))?),
            "$or" => Operator::Or(self.list(operand, |p, item| p.matcher(item, header_names))?),
            "$not" => Operator::Not(Box::new(self.matcher(operand, header_names)?)),
            _ => return Err(self.error("unknown operator")),
        })
    }

    fn bound(&self, operand: &Value) -> Result<Bound, FilterError> {
        match operand {
            Value::Number(number) => Ok(Bound::Number(number.clone())),
            Value::String(text) => Ok(Bound::Text(text.clone())),
            _ => Err(self.error("expects a number or a string")),
        }
    }

    fn values(&self, operand: &Value) -> Result<Vec<Value>, FilterError> {
        match operand {
            Value::Array(items) => Ok(items.clone()),
            _ => Err(self.error("expects an array")),
        }
    }

    fn text(&self, operand: &Value) -> Result<String, FilterError> {
        match operand {
            Value::String(text) => Ok(text.clone()),
            _ => Err(self.error("expects a string")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

/// A value of the request: JSON, or the path, which is tested as a JSON string would be
/// without being copied into one.
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
    Json(&'a Value),
    Text(&'a str),
}

impl<'a> Subject<'a> {
    fn text(self) -> Option<&'a str> {
        match self {
            Subject::Text(text) => Some(text),
            Subject::Json(Value::String(text)) => Some(text),
            Subject::Json(_) => None,
        }
    }

    fn number(self) -> Option<&'a Number> {
        match self {
            Subject::Json(Value::Number(number)) => Some(number),
            _ => None,
        }
    }

    fn array(self) -> Option<&'a [Value]> {
        match self {
            Subject::Json(Value::Array(items)) => Some(items),
            _ => None,
        }
    }

    fn object(self) -> Option<&'a Map<String, Value>> {
        match self {
            Subject::Json(Value::Object(object)) => Some(object),
            _ => None,
        }
    }

    /// Exact equality, numbers compared as numbers.
    fn is(self, expected: &Value) -> bool {
        match self {
            Subject::Text(text) => expected.as_str() == Some(text),
            Subject::Json(value) => json_equal(value, expected),
        }
    }

    fn show(self) -> String {
        match self {
            Subject::Text(text) => show_text(text),
            Subject::Json(value) => show(value),
        }
    }
}

/// Where evaluation reports failures: `matches` ignores them, `explain` keeps the last one.
///
/// Every check that returns false reports last, after anything its parts reported, so the
/// reason kept when the whole filter fails is the one that made it fail.
trait Trace {
    /// Goes down into a key or index of the filter.
    fn enter(&mut self, segment: Segment<'_>);
    /// Comes back up from the last `enter`.
    fn leave(&mut self);
    /// Reports a failure at the current path.
    fn fail(&mut self, reason: impl FnOnce() -> String);
    /// Reports a failure at the current path that wraps the last one reported, for `$or`.
    fn fail_around(&mut self, reason: impl FnOnce() -> String);
}

/// The trace of `matches`: does nothing, so the happy path allocates nothing.
struct Silent;

impl Trace for Silent {
    fn enter(&mut self, _: Segment<'_>) {}
    fn leave(&mut self) {}
    fn fail(&mut self, _: impl FnOnce() -> String) {}
    fn fail_around(&mut self, _: impl FnOnce() -> String) {}
}

/// The trace of `explain`.
#[derive(Default)]
struct Recorder {
    path: String,
    /// The length of `path` before each `enter` still open.
    marks: Vec<usize>,
    mismatch: Option<String>,
}

impl Trace for Recorder {
    fn enter(&mut self, segment: Segment<'_>) {
        self.marks.push(self.path.len());
        push_segment(&mut self.path, segment);
    }

    fn leave(&mut self) {
        if let Some(mark) = self.marks.pop() {
            self.path.truncate(mark);
        }
    }

    fn fail(&mut self, reason: impl FnOnce() -> String) {
        self.mismatch = Some(format!("{}: {}", shown_path(&self.path), reason()));
    }

    fn fail_around(&mut self, reason: impl FnOnce() -> String) {
        let here = format!("{}: {}", shown_path(&self.path), reason());
        self.mismatch = Some(match self.mismatch.take() {
            Some(last) => format!("{here} (last: {last})"),
            None => here,
        });
    }
}

/// Runs `check` with `segment` added to the trace's path.
fn within<T: Trace>(
    trace: &mut T,
    segment: Segment<'_>,
    check: impl FnOnce(&mut T) -> bool,
) -> bool {
    trace.enter(segment);
    let matched = check(trace);
    trace.leave();
    matched
}

/// Reports a failure and returns false, the result of the failed check.
fn fail<T: Trace>(trace: &mut T, reason: impl FnOnce() -> String) -> bool {
    trace.fail(reason);
    false
}

fn missing() -> String {
    "missing".to_owned()
}

fn none_of(alternatives: usize) -> String {
    if alternatives == 1 {
        "the only alternative did not match".to_owned()
    } else {
        format!("none of the {alternatives} alternatives matched")
    }
}

impl Conditions {
    fn check<T: Trace>(&self, input: &FilterInput<'_>, trace: &mut T) -> bool {
        self.0.iter().all(|condition| condition.check(input, trace))
    }
}

impl Condition {
    fn check<T: Trace>(&self, input: &FilterInput<'_>, trace: &mut T) -> bool {
        match self {
            Condition::Part(part, matcher) => within(trace, Segment::Key(part.name()), |t| {
                let subject = part.subject(input);
                let matched = matcher.check(subject, t);
                if !matched && subject.is_none() {
                    // Only the body can be absent; this says why better than "missing".
                    t.fail(|| "the body is not JSON".to_owned());
                }
                matched
            }),
            Condition::And(all) => within(trace, Segment::Key("$and"), |t| {
                all.iter().enumerate().all(|(index, conditions)| {
                    within(t, Segment::Index(index), |t| conditions.check(input, t))
                })
            }),
            Condition::Or(any) => within(trace, Segment::Key("$or"), |t| {
                let matched = any.iter().enumerate().any(|(index, conditions)| {
                    within(t, Segment::Index(index), |t| conditions.check(input, t))
                });
                if !matched {
                    t.fail_around(|| none_of(any.len()));
                }
                matched
            }),
            Condition::Not(negated) => within(trace, Segment::Key("$not"), |t| {
                !negated.check(input, t) || fail(t, || "the negated filter matched".to_owned())
            }),
        }
    }
}

impl Matcher {
    fn check<T: Trace>(&self, subject: Option<Subject<'_>>, trace: &mut T) -> bool {
        let Some(subject) = subject else {
            return match self {
                Matcher::Operators(operators) => check_operators(operators, None, trace),
                _ => fail(trace, missing),
            };
        };
        match self {
            Matcher::Equals(expected) => check_equal(expected, subject, trace),
            Matcher::Fields(fields) => {
                if let Some(object) = subject.object() {
                    return fields_hold(fields, object, trace);
                }
                if let Some(items) = subject.array() {
                    let any = items.iter().any(|item| {
                        item.as_object()
                            .is_some_and(|object| fields_hold(fields, object, trace))
                    });
                    return any
                        || fail(trace, || {
                            format!("no element of {} matches", subject.show())
                        });
                }
                fail(trace, || {
                    format!("expected an object, found {}", subject.show())
                })
            }
            Matcher::Elements(elements) => {
                let Some(items) = subject.array() else {
                    return fail(trace, || {
                        format!("expected an array, found {}", subject.show())
                    });
                };
                elements.iter().enumerate().all(|(index, element)| {
                    within(trace, Segment::Index(index), |t| {
                        items
                            .iter()
                            .any(|item| element.check(Some(Subject::Json(item)), t))
                            || fail(t, || match element {
                                Matcher::Equals(expected) => format!(
                                    "no element of {} equals {}",
                                    subject.show(),
                                    show(expected)
                                ),
                                _ => format!("no element of {} matches", subject.show()),
                            })
                    })
                })
            }
            Matcher::Operators(operators) => check_operators(operators, Some(subject), trace),
        }
    }
}

fn fields_hold<T: Trace>(
    fields: &[(String, Matcher)],
    object: &Map<String, Value>,
    trace: &mut T,
) -> bool {
    fields.iter().all(|(name, matcher)| {
        within(trace, Segment::Key(name), |t| {
            matcher.check(object.get(name).map(Subject::Json), t)
        })
    })
}

fn check_operators<T: Trace>(
    operators: &[Operator],
    subject: Option<Subject<'_>>,
    trace: &mut T,
) -> bool {
    operators.iter().all(|operator| {
        within(trace, Segment::Key(operator.name()), |t| {
            operator.check(subject, t)
        })
    })
}

impl Operator {
    fn check<T: Trace>(&self, subject: Option<Subject<'_>>, trace: &mut T) -> bool {
        match (self, subject) {
            // These decide for themselves what a missing value means.
            (Operator::Exist(expected), found) => match found {
                Some(found) if !expected => fail(trace, || {
                    format!("expected it to be missing, found {}", found.show())
                }),
                None if *expected => fail(trace, missing),
                _ => true,
            },
            (Operator::Neq(excluded), found) => match found {
                Some(found) if equals(excluded, found) => fail(trace, || match found.array() {
                    Some(_) if !excluded.is_array() => {
                        format!("an element of {} equals {}", found.show(), show(excluded))
                    }
                    _ => format!("must not equal {}", show(excluded)),
                }),
                _ => true,
            },
            (Operator::Nin(values), found) => match found {
                Some(found) if any_item(found, |item| is_in(values, item)) => {
                    fail(trace, || match found.array() {
                        Some(_) => format!(
                            "an element of {} is one of {}",
                            found.show(),
                            show_list(values)
                        ),
                        None => format!("{} is one of {}", found.show(), show_list(values)),
                    })
                }
                _ => true,
            },
            (Operator::And(matchers), found) => {
                matchers.iter().enumerate().all(|(index, matcher)| {
                    within(trace, Segment::Index(index), |t| matcher.check(found, t))
                })
            }
            (Operator::Or(matchers), found) => {
                let matched = matchers.iter().enumerate().any(|(index, matcher)| {
                    within(trace, Segment::Index(index), |t| matcher.check(found, t))
                });
                if !matched {
                    trace.fail_around(|| none_of(matchers.len()));
                }
                matched
            }
            (Operator::Not(negated), found) => {
                !negated.check(found, trace)
                    || fail(trace, || "the negated condition matched".to_owned())
            }
            // Every other operator tests a value that is there.
            (_, None) => fail(trace, missing),
            (Operator::Eq(expected), Some(found)) => check_equal(expected, found, trace),
            (Operator::Compare(comparison, bound), Some(found)) => check_each(
                found,
                trace,
                |item| comparison.holds(item, bound),
                || format!("is {} {}", comparison.words(), bound.show()),
                |item| {
                    let comparable = match bound {
                        Bound::Number(_) => item.number().is_some(),
                        Bound::Text(_) => item.text().is_some(),
                    };
                    if comparable {
                        format!(
                            "{} is not {} {}",
                            item.show(),
                            comparison.words(),
                            bound.show()
                        )
                    } else {
                        format!("expected {}, found {}", bound.kind(), item.show())
                    }
                },
            ),
            (Operator::In(values), Some(found)) => check_each(
                found,
                trace,
                |item| is_in(values, item),
                || format!("is one of {}", show_list(values)),
                |item| format!("{} is not one of {}", item.show(), show_list(values)),
            ),
            (Operator::StartsWith(prefix), Some(found)) => check_each(
                found,
                trace,
                |item| {
                    item.text()
                        .is_some_and(|text| text.starts_with(prefix.as_str()))
                },
                || format!("starts with {}", show_text(prefix)),
                |item| match item.text() {
                    Some(_) => format!("{} does not start with {}", item.show(), show_text(prefix)),
                    None => format!("expected a string, found {}", item.show()),
                },
            ),
            (Operator::EndsWith(suffix), Some(found)) => check_each(
                found,
                trace,
                |item| {
                    item.text()
                        .is_some_and(|text| text.ends_with(suffix.as_str()))
                },
                || format!("ends with {}", show_text(suffix)),
                |item| match item.text() {
                    Some(_) => format!("{} does not end with {}", item.show(), show_text(suffix)),
                    None => format!("expected a string, found {}", item.show()),
                },
            ),
            (Operator::Contains(needle), Some(found)) => {
                if let Some(text) = found.text() {
                    return text.contains(needle.as_str())
                        || fail(trace, || {
                            format!("{} does not contain {}", found.show(), show_text(needle))
                        });
                }
                if let Some(items) = found.array() {
                    return items.iter().any(|item| item.as_str() == Some(needle))
                        || fail(trace, || {
                            format!(
                                "no element of {} equals {}",
                                found.show(),
                                show_text(needle)
                            )
                        });
                }
                fail(trace, || {
                    format!("expected a string or an array, found {}", found.show())
                })
            }
        }
    }
}

/// Equality as literals and `$eq` mean it: an event array matches a non-array when any element
/// does; otherwise the whole value must be equal.
fn equals(expected: &Value, found: Subject<'_>) -> bool {
    match found.array() {
        Some(items) if !expected.is_array() => items.iter().any(|item| json_equal(item, expected)),
        _ => found.is(expected),
    }
}

fn check_equal<T: Trace>(expected: &Value, found: Subject<'_>, trace: &mut T) -> bool {
    equals(expected, found)
        || fail(trace, || match found.array() {
            Some(_) if !expected.is_array() => {
                format!("no element of {} equals {}", found.show(), show(expected))
            }
            _ => format!("expected {}, found {}", show(expected), found.show()),
        })
}

fn is_in(values: &[Value], found: Subject<'_>) -> bool {
    values.iter().any(|value| found.is(value))
}

/// The test applied to the value, or to each element when it is an array (any may pass).
fn any_item(found: Subject<'_>, test: impl Fn(Subject<'_>) -> bool) -> bool {
    match found.array() {
        Some(items) => items.iter().any(|item| test(Subject::Json(item))),
        None => test(found),
    }
}

/// `any_item`, reporting a failure as "no element of […] `holds`" for an array, or with
/// `refuse` for a single value.
fn check_each<T: Trace>(
    found: Subject<'_>,
    trace: &mut T,
    test: impl Fn(Subject<'_>) -> bool,
    holds: impl FnOnce() -> String,
    refuse: impl FnOnce(Subject<'_>) -> String,
) -> bool {
    any_item(found, test)
        || fail(trace, || match found.array() {
            Some(_) => format!("no element of {} {}", found.show(), holds()),
            None => refuse(found),
        })
}

/// Deep equality with numbers compared as numbers. It recurses only as deep as both values go,
/// and one of them is always from the filter, so at most MAX_DEPTH.
fn json_equal(found: &Value, expected: &Value) -> bool {
    match (found, expected) {
        (Value::Number(found), Value::Number(expected)) => {
            compare_numbers(found, expected) == Some(Ordering::Equal)
        }
        (Value::Array(found), Value::Array(expected)) => {
            found.len() == expected.len()
                && found
                    .iter()
                    .zip(expected)
                    .all(|(found, expected)| json_equal(found, expected))
        }
        (Value::Object(found), Value::Object(expected)) => {
            found.len() == expected.len()
                && expected.iter().all(|(key, expected)| {
                    found
                        .get(key)
                        .is_some_and(|found| json_equal(found, expected))
                })
        }
        _ => found == expected,
    }
}

/// Orders numbers exactly when both are integers, and as floats otherwise.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return Some(a.cmp(&b));
    }
    if a.is_f64() || b.is_f64() {
        return a.as_f64()?.partial_cmp(&b.as_f64()?);
    }
    // Both integers, neither pair fitting one type: one is negative, the other above i64::MAX.
    Some(if a.is_i64() {
        Ordering::Less
    } else {
        Ordering::Greater
    })
}

// ---------------------------------------------------------------------------------------------
// Paths and rendering.

/// One step of a JSON Pointer.
#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Appends a segment to a JSON Pointer, escaping `~` and `/` in keys as RFC 6901 does.
fn push_segment(path: &mut String, segment: Segment<'_>) {
    path.push('/');
    match segment {
        Segment::Key(key) => {
            for c in key.chars() {
                match c {
                    '~' => path.push_str("~0"),
                    '/' => path.push_str("~1"),
                    c => path.push(c),
                }
            }
        }
        Segment::Index(index) => {
            // Writing to a String cannot fail.
            let _ = write!(path, "{index}");
        }
    }
}

/// The root's pointer is empty, which reads badly in a message.
fn shown_path(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

/// A writer that keeps at most `limit` bytes and then fails, so measuring or showing a huge value
/// stops as soon as it is known to be too big.
struct Capped {
    bytes: Vec<u8>,
    limit: usize,
}

impl Capped {
    fn new(limit: usize) -> Self {
        Capped {
            bytes: Vec::new(),
            limit,
        }
    }
}

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let taken = buf.len().min(self.limit - self.bytes.len());
        if taken == 0 && !buf.is_empty() {
            return Err(io::Error::other("limit reached"));
        }
        self.bytes.extend_from_slice(&buf[..taken]);
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Compact JSON of at most SHOWN_BYTES, cut with `…`.
fn show_json(write: impl FnOnce(&mut Capped) -> Result<(), serde_json::Error>) -> String {
    let mut out = Capped::new(SHOWN_BYTES);
    let complete = write(&mut out).is_ok();
    // The cut may fall inside a character: keep the whole ones.
    let whole = match std::str::from_utf8(&out.bytes) {
        Ok(text) => text.len(),
        Err(error) => error.valid_up_to(),
    };
    let mut text = String::from_utf8_lossy(&out.bytes[..whole]).into_owned();
    if !complete {
        text.push('…');
    }
    text
}

fn show(value: &Value) -> String {
    show_json(|out| serde_json::to_writer(out, value))
}

fn show_text(text: &str) -> String {
    show_json(|out| serde_json::to_writer(out, text))
}

fn show_list(values: &[Value]) -> String {
    show_json(|out| serde_json::to_writer(out, values))
}

/// Cuts `text` to `max` characters, the last being `…` when it is cut.
fn cut(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut kept: String = text.chars().take(max - 1).collect();
    kept.push('…');
    kept
}

// ---------------------------------------------------------------------------------------------
// Summaries: one line per leaf condition, of which the summary shows one or counts them.

fn summarize_conditions(conditions: &Conditions, leaves: &mut Vec<String>) {
    // `{}` is a condition of its own inside a top-level operator, and the whole of an empty filter.
    if conditions.0.is_empty() {
        leaves.push("everything".to_owned());
    }
    for condition in &conditions.0 {
        match condition {
            Condition::Part(part, matcher) => summarize_matcher(matcher, part.name(), leaves),
            Condition::And(all) | Condition::Or(all) => {
                for conditions in all {
                    summarize_conditions(conditions, leaves);
                }
            }
            Condition::Not(negated) => {
                let mut inner = Vec::new();
                summarize_conditions(negated, &mut inner);
                leaves.extend(inner.into_iter().map(|leaf| format!("not ({leaf})")));
            }
        }
    }
}

fn summarize_matcher(matcher: &Matcher, path: &str, leaves: &mut Vec<String>) {
    match matcher {
        Matcher::Equals(expected) => leaves.push(format!("{path} = {}", show(expected))),
        Matcher::Fields(fields) if fields.is_empty() => {
            leaves.push(format!("{path} is an object"));
        }
        Matcher::Fields(fields) => {
            for (name, matcher) in fields {
                summarize_matcher(matcher, &format!("{path}.{name}"), leaves);
            }
        }
        Matcher::Elements(elements) if elements.is_empty() => {
            leaves.push(format!("{path} is an array"));
        }
        Matcher::Elements(elements) => {
            for element in elements {
                summarize_matcher(element, path, leaves);
            }
        }
        Matcher::Operators(operators) => {
            for operator in operators {
                summarize_operator(operator, path, leaves);
            }
        }
    }
}

fn summarize_operator(operator: &Operator, path: &str, leaves: &mut Vec<String>) {
    let leaf = match operator {
        Operator::Eq(expected) => format!("{path} = {}", show(expected)),
        Operator::Neq(excluded) => format!("{path} != {}", show(excluded)),
        Operator::Compare(comparison, bound) => {
            format!("{path} {} {}", comparison.symbol(), bound.show())
        }
        Operator::In(values) => format!("{path} in {}", list_words(values)),
        Operator::Nin(values) => format!("{path} not in {}", list_words(values)),
        Operator::StartsWith(prefix) => format!("{path} starts with {}", show_text(prefix)),
        Operator::EndsWith(suffix) => format!("{path} ends with {}", show_text(suffix)),
        Operator::Contains(needle) => format!("{path} contains {}", show_text(needle)),
        Operator::Exist(true) => format!("{path} exists"),
        Operator::Exist(false) => format!("{path} is missing"),
        Operator::And(matchers) | Operator::Or(matchers) => {
            for matcher in matchers {
                summarize_matcher(matcher, path, leaves);
            }
            return;
        }
        Operator::Not(negated) => {
            let mut inner = Vec::new();
            summarize_matcher(negated, path, &mut inner);
            leaves.extend(inner.into_iter().map(|leaf| format!("not ({leaf})")));
            return;
        }
    };
    leaves.push(leaf);
}

/// A list for people: `[push, pull_request]`, strings unquoted.
fn list_words(values: &[Value]) -> String {
    let words: Vec<String> = values
        .iter()
        .map(|value| match value {
            Value::String(text) => text.clone(),
            other => show(other),
        })
        .collect();
    format!("[{}]", words.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A request as the relay would present it, owning its parts.
    struct Request {
        body: Option<Value>,
        headers: Value,
        query: Value,
        path: String,
    }

    impl Request {
        fn new() -> Self {
            Request {
                body: None,
                headers: json!({}),
                query: json!({}),
                path: String::new(),
            }
        }

        fn body(body: Value) -> Self {
            Request {
                body: Some(body),
                ..Request::new()
            }
        }

        fn headers(headers: Value) -> Self {
            Request {
                headers,
                ..Request::new()
            }
        }

        fn query(query: Value) -> Self {
            Request {
                query,
                ..Request::new()
            }
        }

        fn path(path: &str) -> Self {
            Request {
                path: path.to_owned(),
                ..Request::new()
            }
        }

        fn input(&self) -> FilterInput<'_> {
            FilterInput {
                body: self.body.as_ref(),
                headers: &self.headers,
                query: &self.query,
                path: &self.path,
            }
        }
    }

    fn parse(filter: Value) -> Filter {
        match Filter::parse(&filter) {
            Ok(filter) => filter,
            Err(error) => panic!("{filter} should parse, but: {error}"),
        }
    }

    /// Whether `filter` matches `request`, checking on the way that `explain` agrees with
    /// `matches` and gives a reason exactly when it does not match.
    fn passes(filter: Value, request: &Request) -> bool {
        let filter = parse(filter);
        let matched = filter.matches(&request.input());
        let explanation = filter.explain(&request.input());
        assert_eq!(
            explanation.matched,
            matched,
            "explain disagrees on {:?}",
            filter.as_json()
        );
        assert_eq!(explanation.mismatch.is_none(), matched, "{explanation:?}");
        matched
    }

    fn body_passes(filter: Value, body: Value) -> bool {
        passes(filter, &Request::body(body))
    }

    /// Why `filter` does not match `request`.
    fn mismatch(filter: Value, request: &Request) -> String {
        let explanation = parse(filter).explain(&request.input());
        assert!(!explanation.matched, "expected a mismatch");
        explanation.mismatch.unwrap_or_default()
    }

    fn error(filter: Value) -> String {
        match Filter::parse(&filter) {
            Ok(_) => panic!("{filter} should be refused"),
            Err(error) => error.to_string(),
        }
    }

    /// Takes a deep value apart one level at a time: dropping it whole would recurse as deep.
    fn dismantle(value: Value) {
        let mut pending = vec![value];
        while let Some(mut value) = pending.pop() {
            match &mut value {
                Value::Object(object) => {
                    pending.extend(std::mem::take(object).into_iter().map(|(_, v)| v));
                }
                Value::Array(items) => pending.append(items),
                _ => {}
            }
        }
    }

    /// `{key: value}`, moving `value` in: `json!` would copy it by serializing it, recursively.
    fn wrap(key: &str, value: Value) -> Value {
        let mut object = Map::new();
        object.insert(key.to_owned(), value);
        Value::Object(object)
    }

    /// `depth` objects nested under `key`, the innermost being `{}`.
    fn nested(key: &str, depth: usize) -> Value {
        let mut value = json!({});
        for _ in 1..depth {
            value = wrap(key, value);
        }
        value
    }

    // --- The whole filter --------------------------------------------------------------------

    #[test]
    fn the_empty_filter_matches_everything() {
        assert!(passes(json!({}), &Request::new()));
        assert!(body_passes(json!({}), json!({"type": "x"})));
    }

    #[test]
    fn every_part_of_a_filter_must_hold() {
        let request = Request {
            path: "/orders".to_owned(),
            ..Request::body(json!({"type": "a"}))
        };
        assert!(passes(
            json!({"body": {"type": "a"}, "path": "/orders"}),
            &request
        ));
        assert!(!passes(
            json!({"body": {"type": "a"}, "path": "/other"}),
            &request
        ));
    }

    #[test]
    fn the_filter_is_kept_as_written() {
        let written = json!({"headers": {"X-GitHub-Event": "push"}});
        assert_eq!(parse(written.clone()).as_json(), &written);
    }

    // --- Literals, subsets and arrays --------------------------------------------------------

    #[test]
    fn a_literal_matches_by_equality() {
        assert!(body_passes(json!({"body": {"a": "x"}}), json!({"a": "x"})));
        assert!(!body_passes(json!({"body": {"a": "x"}}), json!({"a": "y"})));
        assert!(body_passes(
            json!({"body": {"a": true}}),
            json!({"a": true})
        ));
        assert!(!body_passes(
            json!({"body": {"a": true}}),
            json!({"a": false})
        ));
        assert!(body_passes(
            json!({"body": {"a": null}}),
            json!({"a": null})
        ));
        assert!(!body_passes(json!({"body": {"a": null}}), json!({"a": 0})));
        assert!(!body_passes(json!({"body": {"a": "1"}}), json!({"a": 1})));
    }

    #[test]
    fn numbers_compare_as_numbers() {
        assert!(body_passes(json!({"body": {"a": 1}}), json!({"a": 1.0})));
        assert!(body_passes(json!({"body": {"a": 1.0}}), json!({"a": 1})));
        assert!(!body_passes(json!({"body": {"a": 1}}), json!({"a": 1.5})));
        assert!(body_passes(json!({"body": {"a": -3}}), json!({"a": -3})));
        assert!(!body_passes(
            json!({"body": {"a": -1}}),
            json!({"a": u64::MAX})
        ));
        assert!(body_passes(
            json!({"body": {"a": {"$lt": u64::MAX}}}),
            json!({"a": -1})
        ));
    }

    #[test]
    fn an_object_matches_as_a_subset_ignoring_extra_keys() {
        let filter = json!({"body": {"type": "invoice.paid"}});
        assert!(body_passes(
            filter.clone(),
            json!({"type": "invoice.paid", "id": 7})
        ));
        assert!(!body_passes(filter.clone(), json!({"id": 7})));
        assert!(!body_passes(filter, json!("invoice.paid")));
    }

    #[test]
    fn a_nested_subset_must_match_at_every_level() {
        let filter = json!({"body": {"data": {"object": {"status": "paid"}}}});
        let paid = json!({"data": {"object": {"status": "paid", "amount": 5}, "x": 1}});
        let open = json!({"data": {"object": {"status": "open"}}});
        assert!(body_passes(filter.clone(), paid));
        assert!(!body_passes(filter, open));
    }

    #[test]
    fn an_empty_object_matches_any_object_but_not_other_values() {
        assert!(body_passes(json!({"body": {}}), json!({"a": 1})));
        assert!(!body_passes(json!({"body": {}}), json!("text")));
    }

    #[test]
    fn an_array_in_the_event_matches_when_any_element_matches() {
        let filter = json!({"body": {"tags": "urgent"}});
        assert!(body_passes(
            filter.clone(),
            json!({"tags": ["a", "urgent"]})
        ));
        assert!(!body_passes(filter.clone(), json!({"tags": ["a", "b"]})));
        assert!(!body_passes(filter, json!({"tags": []})));
    }

    #[test]
    fn an_array_of_objects_in_the_event_matches_when_any_object_matches() {
        let filter = json!({"body": {"items": {"sku": "B"}}});
        assert!(body_passes(
            filter.clone(),
            json!({"items": [{"sku": "A"}, {"sku": "B"}]})
        ));
        assert!(!body_passes(filter, json!({"items": [{"sku": "A"}, "B"]})));
    }

    #[test]
    fn arrays_of_arrays_in_the_event_are_not_flattened() {
        assert!(!body_passes(
            json!({"body": {"tags": "a"}}),
            json!({"tags": [["a"]]})
        ));
    }

    #[test]
    fn an_array_in_the_filter_matches_an_event_array_holding_each_element_in_any_order() {
        let filter = json!({"body": {"tags": ["b", "a"]}});
        assert!(body_passes(
            filter.clone(),
            json!({"tags": ["a", "x", "b"]})
        ));
        assert!(!body_passes(filter.clone(), json!({"tags": ["a", "x"]})));
        assert!(!body_passes(filter, json!({"tags": "a"})));
    }

    #[test]
    fn an_array_in_the_filter_matches_its_elements_as_matchers() {
        let filter = json!({"body": {"items": [{"sku": "A"}, {"$gt": 5}]}});
        assert!(body_passes(
            filter.clone(),
            json!({"items": [9, {"sku": "A", "n": 1}]})
        ));
        assert!(!body_passes(filter, json!({"items": [1, {"sku": "A"}]})));
    }

    #[test]
    fn an_empty_array_in_the_filter_matches_any_array() {
        assert!(body_passes(
            json!({"body": {"tags": []}}),
            json!({"tags": [1]})
        ));
        assert!(!body_passes(
            json!({"body": {"tags": []}}),
            json!({"tags": 1})
        ));
    }

    // --- Operators ---------------------------------------------------------------------------

    #[test]
    fn eq_is_exact_for_objects() {
        let filter = json!({"body": {"a": {"$eq": {"x": 1}}}});
        assert!(body_passes(filter.clone(), json!({"a": {"x": 1.0}})));
        assert!(!body_passes(filter, json!({"a": {"x": 1, "y": 2}})));
    }

    #[test]
    fn eq_matches_a_scalar_or_any_element_and_an_array_exactly() {
        assert!(body_passes(
            json!({"body": {"a": {"$eq": 2}}}),
            json!({"a": 2})
        ));
        assert!(!body_passes(
            json!({"body": {"a": {"$eq": 2}}}),
            json!({"a": 3})
        ));
        assert!(body_passes(
            json!({"body": {"a": {"$eq": 2}}}),
            json!({"a": [1, 2]})
        ));
        assert!(body_passes(
            json!({"body": {"a": {"$eq": [1, 2]}}}),
            json!({"a": [1, 2]})
        ));
        assert!(!body_passes(
            json!({"body": {"a": {"$eq": [1, 2]}}}),
            json!({"a": [2, 1]})
        ));
    }

    #[test]
    fn neq_matches_anything_but_the_value() {
        let filter = json!({"body": {"status": {"$neq": "failed"}}});
        assert!(body_passes(filter.clone(), json!({"status": "ok"})));
        assert!(!body_passes(filter.clone(), json!({"status": "failed"})));
        assert!(!body_passes(
            filter.clone(),
            json!({"status": ["ok", "failed"]})
        ));
        assert!(body_passes(filter, json!({})));
    }

    #[test]
    fn gt_and_gte_compare_numbers_numerically() {
        let gt = json!({"body": {"n": {"$gt": 100}}});
        let gte = json!({"body": {"n": {"$gte": 100}}});
        assert!(body_passes(gt.clone(), json!({"n": 100.5})));
        assert!(!body_passes(gt, json!({"n": 100})));
        assert!(body_passes(gte.clone(), json!({"n": 100.0})));
        assert!(!body_passes(gte, json!({"n": 99})));
    }

    #[test]
    fn lt_and_lte_compare_numbers_numerically() {
        let lt = json!({"body": {"n": {"$lt": 10}}});
        let lte = json!({"body": {"n": {"$lte": 10}}});
        assert!(body_passes(lt.clone(), json!({"n": 9})));
        assert!(!body_passes(lt, json!({"n": 10})));
        assert!(body_passes(lte.clone(), json!({"n": 10})));
        assert!(!body_passes(lte, json!({"n": 10.1})));
    }

    #[test]
    fn comparisons_order_strings_lexicographically() {
        let filter = json!({"body": {"at": {"$gte": "2024-01-01", "$lt": "2025"}}});
        assert!(body_passes(filter.clone(), json!({"at": "2024-06-30"})));
        assert!(!body_passes(filter.clone(), json!({"at": "2023-12-31"})));
        assert!(!body_passes(filter, json!({"at": "2025-01-01"})));
    }

    #[test]
    fn comparisons_of_mixed_types_never_match() {
        assert!(!body_passes(
            json!({"body": {"n": {"$gt": 5}}}),
            json!({"n": "10"})
        ));
        assert!(!body_passes(
            json!({"body": {"n": {"$lt": "z"}}}),
            json!({"n": 1})
        ));
        assert!(!body_passes(
            json!({"body": {"n": {"$lte": 5}}}),
            json!({"n": null})
        ));
    }

    #[test]
    fn comparisons_match_any_element_of_an_event_array() {
        let filter = json!({"body": {"n": {"$gt": 5}}});
        assert!(body_passes(filter.clone(), json!({"n": [1, 7]})));
        assert!(!body_passes(filter, json!({"n": [1, 2]})));
    }

    #[test]
    fn in_matches_a_value_equal_to_one_of_the_list() {
        let filter = json!({"body": {"type": {"$in": ["a", "b", 3]}}});
        assert!(body_passes(filter.clone(), json!({"type": "b"})));
        assert!(body_passes(filter.clone(), json!({"type": 3.0})));
        assert!(!body_passes(filter.clone(), json!({"type": "c"})));
        assert!(body_passes(filter.clone(), json!({"type": ["x", "a"]})));
        assert!(!body_passes(filter, json!({"type": ["x", "y"]})));
    }

    #[test]
    fn nin_matches_a_value_in_none_of_the_list_or_a_missing_one() {
        let filter = json!({"body": {"type": {"$nin": ["a", "b"]}}});
        assert!(body_passes(filter.clone(), json!({"type": "c"})));
        assert!(!body_passes(filter.clone(), json!({"type": "a"})));
        assert!(!body_passes(filter.clone(), json!({"type": ["c", "b"]})));
        assert!(body_passes(filter, json!({})));
    }

    #[test]
    fn starts_with_matches_a_string_prefix() {
        let filter = json!({"body": {"type": {"$startsWith": "invoice."}}});
        assert!(body_passes(filter.clone(), json!({"type": "invoice.paid"})));
        assert!(!body_passes(
            filter.clone(),
            json!({"type": "charge.invoice."})
        ));
        assert!(!body_passes(filter.clone(), json!({"type": 5})));
        assert!(body_passes(filter, json!({"type": ["x", "invoice.y"]})));
    }

    #[test]
    fn ends_with_matches_a_string_suffix() {
        let filter = json!({"body": {"file": {"$endsWith": ".pdf"}}});
        assert!(body_passes(filter.clone(), json!({"file": "a.pdf"})));
        assert!(!body_passes(filter.clone(), json!({"file": "a.pdf.zip"})));
        assert!(!body_passes(
            filter.clone(),
            json!({"file": {"name": "a.pdf"}})
        ));
        assert!(body_passes(filter, json!({"file": ["a.txt", "b.pdf"]})));
    }

    #[test]
    fn contains_matches_a_substring_or_an_array_element() {
        let filter = json!({"body": {"msg": {"$contains": "error"}}});
        assert!(body_passes(
            filter.clone(),
            json!({"msg": "an error occurred"})
        ));
        assert!(!body_passes(filter.clone(), json!({"msg": "all good"})));
        assert!(body_passes(
            filter.clone(),
            json!({"msg": ["warn", "error"]})
        ));
        assert!(!body_passes(filter.clone(), json!({"msg": ["an error"]})));
        assert!(!body_passes(filter, json!({"msg": 5})));
    }

    #[test]
    fn exist_tests_presence_with_null_counting_as_present() {
        let present = json!({"body": {"a": {"$exist": true}}});
        let absent = json!({"body": {"a": {"$exist": false}}});
        assert!(body_passes(present.clone(), json!({"a": null})));
        assert!(!body_passes(present, json!({"b": 1})));
        assert!(body_passes(absent.clone(), json!({"b": 1})));
        assert!(!body_passes(absent, json!({"a": null})));
    }

    #[test]
    fn several_operators_in_one_object_must_all_hold() {
        let filter = json!({"body": {"n": {"$gt": 1, "$lt": 5}}});
        assert!(body_passes(filter.clone(), json!({"n": 3})));
        assert!(!body_passes(filter.clone(), json!({"n": 0})));
        assert!(!body_passes(filter, json!({"n": 6})));
    }

    #[test]
    fn and_on_a_value_needs_every_matcher() {
        let filter = json!({"body": {"t": {"$and": [{"$startsWith": "a"}, {"$endsWith": "z"}]}}});
        assert!(body_passes(filter.clone(), json!({"t": "abz"})));
        assert!(!body_passes(filter, json!({"t": "abc"})));
    }

    #[test]
    fn or_on_a_value_needs_any_matcher() {
        let filter = json!({"body": {"t": {"$or": ["a", {"$startsWith": "b"}]}}});
        assert!(body_passes(filter.clone(), json!({"t": "a"})));
        assert!(body_passes(filter.clone(), json!({"t": "bc"})));
        assert!(!body_passes(filter, json!({"t": "c"})));
    }

    #[test]
    fn not_on_a_value_negates_its_matcher() {
        let filter = json!({"body": {"t": {"$not": {"$in": ["a", "b"]}}}});
        assert!(body_passes(filter.clone(), json!({"t": "c"})));
        assert!(!body_passes(filter, json!({"t": "a"})));
    }

    #[test]
    fn a_missing_field_matches_only_exist_false_nin_neq_and_a_failing_not() {
        let empty = json!({});
        for matcher in [
            json!({"$exist": false}),
            json!({"$nin": [1]}),
            json!({"$neq": 1}),
            json!({"$not": 1}),
            json!({"$not": {"$exist": true}}),
        ] {
            assert!(
                body_passes(json!({"body": {"a": matcher}}), empty.clone()),
                "{matcher}"
            );
        }
        for matcher in [
            json!(null),
            json!(1),
            json!({}),
            json!([]),
            json!({"$exist": true}),
            json!({"$eq": null}),
            json!({"$in": [null]}),
            json!({"$gt": 0}),
            json!({"$startsWith": ""}),
            json!({"$endsWith": ""}),
            json!({"$contains": ""}),
            json!({"$not": {"$exist": false}}),
            json!({"$or": [{"$gt": 0}, {"$lt": 0}]}),
        ] {
            assert!(
                !body_passes(json!({"body": {"a": matcher}}), empty.clone()),
                "{matcher}"
            );
        }
    }

    // --- Parts -------------------------------------------------------------------------------

    #[test]
    fn header_names_in_the_filter_are_compared_lower_cased() {
        let request = Request::headers(json!({"x-github-event": "push"}));
        assert!(passes(
            json!({"headers": {"X-GitHub-Event": "push"}}),
            &request
        ));
        assert!(!passes(
            json!({"headers": {"X-GitHub-Event": "Push"}}),
            &request
        ));
        let either = json!({"headers": {"$or": [{"X-Other": "1"}, {"X-GITHUB-EVENT": "push"}]}});
        assert!(passes(either, &request));
        let both =
            json!({"headers": {"$and": [{"X-GitHub-Event": "push"}, {"x-github-event": "push"}]}});
        assert!(passes(both, &request));
        let not_push = json!({"headers": {"$not": {"X-GitHub-Event": "push"}}});
        assert!(!passes(not_push, &request));
    }

    #[test]
    fn a_missing_header_does_not_match() {
        let request = Request::headers(json!({"x-a": "1"}));
        assert!(!passes(json!({"headers": {"x-b": "1"}}), &request));
        assert!(passes(
            json!({"headers": {"x-b": {"$exist": false}}}),
            &request
        ));
    }

    #[test]
    fn query_parameters_match_by_name_and_value() {
        let request = Request::query(json!({"env": "prod", "v": "2"}));
        assert!(passes(json!({"query": {"env": "prod"}}), &request));
        assert!(!passes(json!({"query": {"env": "dev"}}), &request));
        assert!(!passes(json!({"query": {"Env": "prod"}}), &request));
    }

    #[test]
    fn the_path_matches_like_a_string() {
        let request = Request::path("/orders/42");
        assert!(passes(
            json!({"path": {"$startsWith": "/orders"}}),
            &request
        ));
        assert!(!passes(
            json!({"path": {"$startsWith": "/users"}}),
            &request
        ));
        assert!(passes(json!({"path": "/orders/42"}), &request));
        assert!(!passes(json!({"path": "/orders"}), &request));
        assert!(passes(
            json!({"path": {"$in": ["/a", "/orders/42"]}}),
            &request
        ));
        assert!(!passes(json!({"path": {"a": 1}}), &request));
    }

    #[test]
    fn an_empty_path_is_an_empty_string() {
        assert!(passes(json!({"path": ""}), &Request::path("")));
        assert!(!passes(
            json!({"path": {"$startsWith": "/"}}),
            &Request::path("")
        ));
    }

    #[test]
    fn a_body_that_is_not_json_matches_only_exist_false() {
        let request = Request::new();
        assert!(passes(json!({"body": {"$exist": false}}), &request));
        assert!(!passes(json!({"body": {}}), &request));
        assert!(!passes(json!({"body": {"$exist": true}}), &request));
        assert!(!passes(json!({"body": null}), &request));
    }

    // --- Top-level logic ---------------------------------------------------------------------

    #[test]
    fn a_top_level_or_needs_any_filter() {
        let filter = json!({"$or": [
            {"headers": {"x-github-event": "push"}},
            {"body": {"action": "opened"}},
        ]});
        let pushed = Request::headers(json!({"x-github-event": "push"}));
        let opened = Request::body(json!({"action": "opened"}));
        let closed = Request::body(json!({"action": "closed"}));
        assert!(passes(filter.clone(), &pushed));
        assert!(passes(filter.clone(), &opened));
        assert!(!passes(filter, &closed));
    }

    #[test]
    fn a_top_level_and_needs_every_filter() {
        let filter =
            json!({"$and": [{"path": {"$startsWith": "/a"}}, {"path": {"$endsWith": "z"}}]});
        assert!(passes(filter.clone(), &Request::path("/abz")));
        assert!(!passes(filter, &Request::path("/abc")));
    }

    #[test]
    fn a_top_level_not_negates_a_filter() {
        let filter = json!({"$not": {"body": {"test": true}}});
        assert!(body_passes(filter.clone(), json!({"test": false})));
        assert!(!body_passes(filter.clone(), json!({"test": true})));
        assert!(passes(filter, &Request::new()));
    }

    // --- Errors ------------------------------------------------------------------------------

    #[test]
    fn a_filter_that_is_not_an_object_is_refused() {
        assert_eq!(error(json!([])), "/: expects a filter object");
        assert_eq!(error(json!("body")), "/: expects a filter object");
    }

    #[test]
    fn an_unknown_part_is_refused_at_its_path() {
        assert_eq!(
            error(json!({"color": "red"})),
            "/color: unknown part (use body, headers, query or path)"
        );
    }

    #[test]
    fn an_unknown_top_level_operator_is_refused() {
        assert_eq!(
            error(json!({"$gt": 1})),
            "/$gt: unknown operator (the top level takes $and, $or and $not)"
        );
    }

    #[test]
    fn an_unknown_operator_is_refused_at_its_path() {
        assert_eq!(
            error(json!({"body": {"type": {"$gtt": 1}}})),
            "/body/type/$gtt: unknown operator"
        );
    }

    #[test]
    fn an_error_has_its_path_and_message_apart() {
        let refused = Filter::parse(&json!({"body": {"type": {"$gtt": 1}}}));
        let expected = FilterError {
            path: "/body/type/$gtt".to_owned(),
            message: "unknown operator".to_owned(),
        };
        assert_eq!(refused.err(), Some(expected));
    }

    #[test]
    fn error_paths_escape_keys_and_number_indices() {
        assert_eq!(
            error(json!({"body": {"a/b": {"c~d": [1, {"$x": 1}]}}})),
            "/body/a~1b/c~0d/1/$x: unknown operator"
        );
        assert_eq!(
            error(json!({"$or": [{}, {"$and": [{"query": {"$y": 1}}]}]})),
            "/$or/1/$and/0/query/$y: unknown operator"
        );
    }

    #[test]
    fn mixing_operators_and_plain_keys_is_refused() {
        assert_eq!(
            error(json!({"body": {"amount": {"$gt": 1, "currency": "eur"}}})),
            "/body/amount: mixes operators ($gt) with plain keys (currency); use one or the other"
        );
    }

    #[test]
    fn comparisons_need_a_number_or_a_string() {
        for operator in ["$gt", "$gte", "$lt", "$lte"] {
            assert_eq!(
                error(json!({"body": {"amount": {operator: [1]}}})),
                format!("/body/amount/{operator}: expects a number or a string")
            );
        }
    }

    #[test]
    fn in_and_nin_need_an_array() {
        assert_eq!(
            error(json!({"body": {"a": {"$in": "x"}}})),
            "/body/a/$in: expects an array"
        );
        assert_eq!(
            error(json!({"body": {"a": {"$nin": {}}}})),
            "/body/a/$nin: expects an array"
        );
    }

    #[test]
    fn string_operators_need_a_string() {
        for operator in ["$startsWith", "$endsWith", "$contains"] {
            assert_eq!(
                error(json!({"path": {operator: 1}})),
                format!("/path/{operator}: expects a string")
            );
        }
    }

    #[test]
    fn exist_needs_true_or_false() {
        assert_eq!(
            error(json!({"body": {"a": {"$exist": 1}}})),
            "/body/a/$exist: expects true or false"
        );
    }

    #[test]
    fn and_and_or_need_a_non_empty_array() {
        assert_eq!(error(json!({"$or": []})), "/$or: expects a non-empty array");
        assert_eq!(
            error(json!({"$and": {}})),
            "/$and: expects a non-empty array"
        );
        assert_eq!(
            error(json!({"body": {"$or": []}})),
            "/body/$or: expects a non-empty array"
        );
        assert_eq!(
            error(json!({"body": {"$and": 1}})),
            "/body/$and: expects a non-empty array"
        );
    }

    #[test]
    fn top_level_operators_need_filter_objects() {
        assert_eq!(
            error(json!({"$not": "x"})),
            "/$not: expects a filter object"
        );
        assert_eq!(
            error(json!({"$or": [{}, 1]})),
            "/$or/1: expects a filter object"
        );
    }

    #[test]
    fn errors_inside_value_operators_are_found() {
        assert_eq!(
            error(json!({"body": {"a": {"$not": {"$or": [1, {"$q": 1}]}}}})),
            "/body/a/$not/$or/1/$q: unknown operator"
        );
    }

    // --- Limits ------------------------------------------------------------------------------

    #[test]
    fn a_filter_at_max_depth_is_accepted_and_one_deeper_refused() {
        assert!(Filter::parse(&nested("$not", MAX_DEPTH)).is_ok());
        let message = error(nested("$not", MAX_DEPTH + 1));
        let path = "/$not".repeat(MAX_DEPTH);
        assert_eq!(message, format!("{path}: nests deeper than 32 levels"));
    }

    #[test]
    fn ten_thousand_nested_nots_are_refused_without_overflow() {
        let deep = nested("$not", 10_000);
        let refused = Filter::parse(&deep);
        dismantle(deep);
        let message = refused.err().map(|e| e.message).unwrap_or_default();
        assert_eq!(message, "nests deeper than 32 levels");
    }

    #[test]
    fn ten_thousand_nested_arrays_are_refused_without_overflow() {
        let mut deep = json!(1);
        for _ in 0..10_000 {
            deep = Value::Array(vec![deep]);
        }
        let filter = wrap("body", wrap("a", deep));
        let refused = Filter::parse(&filter);
        dismantle(filter);
        let message = refused.err().map(|e| e.message).unwrap_or_default();
        assert_eq!(message, "nests deeper than 32 levels");
    }

    #[test]
    fn a_filter_of_max_bytes_is_accepted_and_one_byte_more_refused() {
        let with_text = |length: usize| json!({"body": {"a": "x".repeat(length)}});
        let overhead = with_text(0).to_string().len();
        assert!(Filter::parse(&with_text(MAX_BYTES - overhead)).is_ok());
        assert_eq!(
            error(with_text(MAX_BYTES - overhead + 1)),
            "/: is larger than 16384 bytes (as compact JSON)"
        );
    }

    #[test]
    fn a_filter_of_max_nodes_is_accepted_and_one_node_more_refused() {
        // The filter, its body array and each element are nodes.
        let with_elements = |count: usize| json!({"body": vec![1; count]});
        assert!(Filter::parse(&with_elements(MAX_NODES - 2)).is_ok());
        assert_eq!(
            error(with_elements(MAX_NODES - 1)),
            "/body/998: the filter has more than 1000 conditions"
        );
    }

    // --- Explanations ------------------------------------------------------------------------

    #[test]
    fn a_match_has_no_mismatch() {
        let explanation = parse(json!({"path": "/a"})).explain(&Request::path("/a").input());
        assert_eq!(
            explanation,
            Explanation {
                matched: true,
                mismatch: None
            }
        );
    }

    #[test]
    fn a_different_value_is_explained_with_both_values() {
        assert_eq!(
            mismatch(
                json!({"body": {"type": "invoice.paid"}}),
                &Request::body(json!({"type": "invoice.created"}))
            ),
            r#"/body/type: expected "invoice.paid", found "invoice.created""#
        );
    }

    #[test]
    fn a_missing_header_is_explained_as_missing() {
        assert_eq!(
            mismatch(
                json!({"headers": {"X-GitHub-Event": "push"}}),
                &Request::new()
            ),
            "/headers/x-github-event: missing"
        );
    }

    #[test]
    fn a_failed_comparison_is_explained_with_its_operator() {
        let filter = json!({"body": {"amount": {"$gt": 100}}});
        assert_eq!(
            mismatch(filter.clone(), &Request::body(json!({"amount": 50}))),
            "/body/amount/$gt: 50 is not greater than 100"
        );
        assert_eq!(
            mismatch(filter.clone(), &Request::body(json!({"amount": "50"}))),
            r#"/body/amount/$gt: expected a number, found "50""#
        );
        assert_eq!(
            mismatch(filter, &Request::body(json!({"amount": [1, 2]}))),
            "/body/amount/$gt: no element of [1,2] is greater than 100"
        );
    }

    #[test]
    fn each_operator_failure_is_explained() {
        let body = Request::body(json!({"a": "abc", "n": [1, 2], "o": {"x": 1}}));
        let cases = [
            (
                json!({"a": {"$eq": "x"}}),
                r#"/body/a/$eq: expected "x", found "abc""#,
            ),
            (
                json!({"a": {"$neq": "abc"}}),
                r#"/body/a/$neq: must not equal "abc""#,
            ),
            (
                json!({"n": {"$neq": 2}}),
                "/body/n/$neq: an element of [1,2] equals 2",
            ),
            (
                json!({"a": {"$lte": "abb"}}),
                r#"/body/a/$lte: "abc" is not less than or equal to "abb""#,
            ),
            (
                json!({"a": {"$in": ["x"]}}),
                r#"/body/a/$in: "abc" is not one of ["x"]"#,
            ),
            (
                json!({"n": {"$in": [3]}}),
                "/body/n/$in: no element of [1,2] is one of [3]",
            ),
            (
                json!({"a": {"$nin": ["abc"]}}),
                r#"/body/a/$nin: "abc" is one of ["abc"]"#,
            ),
            (
                json!({"n": {"$nin": [2]}}),
                "/body/n/$nin: an element of [1,2] is one of [2]",
            ),
            (
                json!({"a": {"$startsWith": "b"}}),
                r#"/body/a/$startsWith: "abc" does not start with "b""#,
            ),
            (
                json!({"o": {"$endsWith": "b"}}),
                r#"/body/o/$endsWith: expected a string, found {"x":1}"#,
            ),
            (
                json!({"a": {"$contains": "z"}}),
                r#"/body/a/$contains: "abc" does not contain "z""#,
            ),
            (
                json!({"n": {"$contains": "1"}}),
                r#"/body/n/$contains: no element of [1,2] equals "1""#,
            ),
            (
                json!({"a": {"$exist": false}}),
                r#"/body/a/$exist: expected it to be missing, found "abc""#,
            ),
            (json!({"z": {"$exist": true}}), "/body/z/$exist: missing"),
            (
                json!({"a": {"$not": "abc"}}),
                "/body/a/$not: the negated condition matched",
            ),
            (json!({"n": 3}), "/body/n: no element of [1,2] equals 3"),
            (
                json!({"n": [1, 3]}),
                "/body/n/1: no element of [1,2] equals 3",
            ),
            (
                json!({"a": [1]}),
                r#"/body/a: expected an array, found "abc""#,
            ),
            (
                json!({"a": {"b": 1}}),
                r#"/body/a: expected an object, found "abc""#,
            ),
            (json!({"o": {"x": 2}}), "/body/o/x: expected 2, found 1"),
        ];
        for (matcher, expected) in cases {
            assert_eq!(mismatch(json!({"body": matcher}), &body), expected);
        }
    }

    #[test]
    fn an_or_is_explained_as_no_alternative_matching() {
        let filter = json!({"$or": [{"path": "/a"}, {"headers": {"x-event": "push"}}]});
        assert_eq!(
            mismatch(filter, &Request::path("/b")),
            "/$or: none of the 2 alternatives matched (last: /$or/1/headers/x-event: missing)"
        );
    }

    #[test]
    fn a_not_is_explained_as_the_negated_filter_matching() {
        assert_eq!(
            mismatch(json!({"$not": {"path": "/a"}}), &Request::path("/a")),
            "/$not: the negated filter matched"
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_explained_so() {
        assert_eq!(
            mismatch(json!({"body": {"type": "x"}}), &Request::new()),
            "/body: the body is not JSON"
        );
    }

    #[test]
    fn the_explanation_names_the_first_failing_part() {
        let request = Request {
            path: "/b".to_owned(),
            ..Request::body(json!({"type": "x"}))
        };
        let filter = json!({"body": {"type": "x"}, "path": "/a"});
        assert_eq!(
            mismatch(filter, &request),
            r#"/path: expected "/a", found "/b""#
        );
    }

    #[test]
    fn long_values_are_cut_in_explanations() {
        let long = "y".repeat(500);
        let text = mismatch(
            json!({"body": {"a": "x"}}),
            &Request::body(json!({"a": long})),
        );
        let found = format!("found \"{}…", "y".repeat(SHOWN_BYTES - 1));
        assert!(text.ends_with(&found), "{text}");
    }

    #[test]
    fn cutting_a_value_keeps_whole_characters() {
        let shown = show(&json!("é".repeat(100)));
        assert!(shown.ends_with('…'), "{shown}");
        assert!(shown.len() <= SHOWN_BYTES + '…'.len_utf8(), "{shown}");
        assert!(!shown.contains('\u{fffd}'), "{shown}");
    }

    // --- Summaries ---------------------------------------------------------------------------

    #[test]
    fn an_empty_filter_is_summarized_as_everything() {
        assert_eq!(parse(json!({})).summary(), "everything");
    }

    #[test]
    fn a_single_condition_is_summarized_in_full() {
        let cases = [
            (
                json!({"body": {"type": "invoice.paid"}}),
                r#"body.type = "invoice.paid""#,
            ),
            (
                json!({"headers": {"X-GitHub-Event": {"$in": ["push", "pull_request"]}}}),
                "headers.x-github-event in [push, pull_request]",
            ),
            (
                json!({"path": {"$startsWith": "/orders"}}),
                r#"path starts with "/orders""#,
            ),
            (json!({"body": {"n": {"$gte": 5}}}), "body.n >= 5"),
            (
                json!({"query": {"v": {"$exist": false}}}),
                "query.v is missing",
            ),
            (
                json!({"$not": {"body": {"test": true}}}),
                "not (body.test = true)",
            ),
            (json!({"$or": [{"$and": [{}]}]}), "everything"),
        ];
        for (filter, expected) in cases {
            assert_eq!(parse(filter).summary(), expected);
        }
    }

    #[test]
    fn several_conditions_are_counted() {
        let filter = json!({"body": {"type": "a", "n": {"$gt": 1}}, "path": "/x"});
        assert_eq!(parse(filter).summary(), "3 conditions");
        let either = json!({"$or": [{}, {"path": "/x"}]});
        assert_eq!(parse(either).summary(), "2 conditions");
    }

    #[test]
    fn a_long_summary_is_cut_to_eighty_characters() {
        let summary = parse(json!({"body": {"type": "z".repeat(200)}})).summary();
        assert_eq!(summary.chars().count(), SUMMARY_CHARS);
        assert!(summary.ends_with('…'), "{summary}");
    }

    #[test]
    fn filters_see_the_query_decoded_with_the_first_of_repeated_names() {
        assert_eq!(
            query_object("topic=orders%2Fcreate&shop=a+b&topic=other&flag"),
            json!({"topic": "orders/create", "shop": "a b", "flag": ""})
        );
        assert_eq!(query_object(""), json!({}));
    }
}
