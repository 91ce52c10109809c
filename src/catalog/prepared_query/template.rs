//! Prepared-query templates: Consul's `name_prefix_match` templates rendered for a name.
//!
//! Every string of a template's `Service` part (the service name, tags, check IDs, `Near`,
//! metadata values, failover datacenters and targets) is interpolated, as Consul's `walk`
//! does, with the variables `${name.full}` (the name looked up), `${name.prefix}` (the
//! template's name), `${name.suffix}` (the name less the prefix), `${agent.segment}` (always
//! empty: cairn has no network segments) and `${match(N)}` (group N of `Template.Regexp`
//! matched against the full name; `""` when it does not match or N is out of range).
//!
//! Consul parses these strings as HIL; cairn reads the part of HIL a query uses: literal text,
//! `$${` for a literal `${`, and `${ ... }` holding a variable or `match(<integer>)`. Anything
//! else in `${ ... }` is refused when the template is stored, as Consul refuses what HIL cannot
//! parse or evaluate (its test render). Pure.

use regex::Regex;

use crate::catalog::prepared_query::{PreparedQuery, ServiceQuery, TEMPLATE_TYPE_NAME_PREFIX_MATCH};

/// Largest compiled regexp, in bytes of the regex crate's program: a bound on the memory and
/// time a hostile `Template.Regexp` can cost (the regex crate never backtracks).
const TEMPLATE_REGEXP_PROGRAM_BYTES_MAX: usize = 1 << 20;

/// A template checked and ready to render.
pub struct Compiled<'a> {
    query: &'a PreparedQuery,
    regexp: Option<Regex>,
}

/// One piece of an interpolated string.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Variable(String),
    Match(i64),
}

impl<'a> Compiled<'a> {
    /// Checks `query` as Consul's `Compile` does: the type, every string's syntax, the regexp,
    /// and a test render with the template's own name.
    pub fn new(query: &'a PreparedQuery) -> Result<Compiled<'a>, String> {
        if query.template.kind != TEMPLATE_TYPE_NAME_PREFIX_MATCH {
            return Err(format!("Bad Template.Type '{}'", query.template.kind));
        }
        let mut service = query.service.clone();
        visit_strings(&mut service, &mut |path, text| {
            parse(text).map(|_| ()).map_err(|error| format!("Bad format '{text}' in Service{path}: {error}"))
        })?;
        let regexp = match query.template.regexp.as_str() {
            "" => None,
            pattern => Some(
                regex::RegexBuilder::new(pattern)
                    .size_limit(TEMPLATE_REGEXP_PROGRAM_BYTES_MAX)
                    .build()
                    .map_err(|error| format!("Bad Regexp: {}", one_line(&error.to_string())))?,
            ),
        };
        let compiled = Compiled { query, regexp };
        compiled.render(&query.name)?;
        Ok(compiled)
    }

    /// The query with every string of its `Service` part interpolated for `name`.
    pub fn render(&self, name: &str) -> Result<PreparedQuery, String> {
        let matches: Vec<String> = match &self.regexp {
            Some(regexp) => regexp
                .captures(name)
                .map(|captures| captures.iter().map(|group| group.map_or(String::new(), |g| g.as_str().to_string())).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let prefix = self.query.name.as_str();
        // Consul trims the prefix case-sensitively (`strings.TrimPrefix`).
        let suffix = name.strip_prefix(prefix).unwrap_or(name);
        let lookup = |piece: &Piece| -> Result<String, String> {
            match piece {
                Piece::Text(text) => Ok(text.clone()),
                Piece::Variable(variable) => match variable.as_str() {
                    "name.full" => Ok(name.to_string()),
                    "name.prefix" => Ok(prefix.to_string()),
                    "name.suffix" => Ok(suffix.to_string()),
                    "agent.segment" => Ok(String::new()),
                    other => Err(format!("unknown variable accessed: {other}")),
                },
                Piece::Match(index) => Ok(usize::try_from(*index).ok().and_then(|i| matches.get(i)).cloned().unwrap_or_default()),
            }
        };
        let mut rendered = self.query.clone();
        visit_strings(&mut rendered.service, &mut |path, text| {
            let pieces = parse(text).map_err(|error| format!("Bad format '{text}' in Service{path}: {error}"))?;
            let mut out = String::new();
            for piece in &pieces {
                out.push_str(&lookup(piece).map_err(|error| format!("Bad evaluation for '{text}' in Service{path}: {error}"))?);
            }
            *text = out;
            Ok(())
        })?;
        if self.query.template.remove_empty_tags {
            rendered.service.tags.retain(|tag| !tag.is_empty());
        }
        Ok(rendered)
    }
}

/// Calls `visit` on every string of `service` with its path (`.Service`, `.Tags[0]`,
/// `.NodeMeta[key]`), as Consul's `walk` visits the struct's string fields.
fn visit_strings(service: &mut ServiceQuery, visit: &mut dyn FnMut(&str, &mut String) -> Result<(), String>) -> Result<(), String> {
    visit(".Service", &mut service.service)?;
    for (position, datacenter) in service.failover.datacenters.iter_mut().enumerate() {
        visit(&format!(".Failover.Datacenters[{position}]"), datacenter)?;
    }
    for (position, target) in service.failover.targets.iter_mut().enumerate() {
        visit(&format!(".Failover.Targets[{position}].Peer"), &mut target.peer)?;
        visit(&format!(".Failover.Targets[{position}].Datacenter"), &mut target.datacenter)?;
        visit(&format!(".Failover.Targets[{position}].Partition"), &mut target.partition)?;
        visit(&format!(".Failover.Targets[{position}].Namespace"), &mut target.namespace)?;
    }
    for (position, check_id) in service.ignore_check_ids.iter_mut().enumerate() {
        visit(&format!(".IgnoreCheckIDs[{position}]"), check_id)?;
    }
    visit(".Near", &mut service.near)?;
    for (position, tag) in service.tags.iter_mut().enumerate() {
        visit(&format!(".Tags[{position}]"), tag)?;
    }
    for (key, value) in service.node_meta.iter_mut() {
        visit(&format!(".NodeMeta[{key}]"), value)?;
    }
    for (key, value) in service.service_meta.iter_mut() {
        visit(&format!(".ServiceMeta[{key}]"), value)?;
    }
    visit(".Peer", &mut service.peer)?;
    visit(".SamenessGroup", &mut service.sameness_group)
}

/// Splits `text` into literal text and `${ ... }` interpolations.
fn parse(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        literal.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(escaped) = after.strip_prefix("$${") {
            literal.push_str("${");
            rest = escaped;
        } else if let Some(open) = after.strip_prefix("${") {
            let close = open.find('}').ok_or_else(|| "expected \"}\" but found end of string".to_string())?;
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(parse_expression(open[..close].trim())?);
            rest = &open[close + 1..];
        } else {
            literal.push('$');
            rest = &after[1..];
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

/// A variable name (`name.full`) or `match(<integer>)`.
fn parse_expression(expression: &str) -> Result<Piece, String> {
    if let Some(argument) = expression.strip_prefix("match").map(str::trim_start).and_then(|rest| rest.strip_prefix('(')) {
        let argument = argument.strip_suffix(')').ok_or_else(|| format!("expected \")\" in {expression:?}"))?;
        return argument.trim().parse::<i64>().map(Piece::Match).map_err(|_| format!("match() takes an integer, got {argument:?}"));
    }
    let variable = expression.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if expression.is_empty() || !variable {
        return Err(format!("unsupported expression {expression:?}"));
    }
    Ok(Piece::Variable(expression.to_string()))
}

/// The first line of a multi-line error (the regex crate draws a caret diagram).
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ")
}
