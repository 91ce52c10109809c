//! Unit tests for filter parsing and evaluation, on documents shaped like Consul's HTTP API
//! output, plus a deterministic fuzz loop that checks no input makes the module panic.

use serde_json::{Value, json};

use super::*;

fn consul_document() -> Value {
    json!({
        "Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1",
        "ServiceTags": ["prod", "v2"], "ServiceMeta": {"version": "2", "team": "payments"},
        "NodeMeta": {"rack-1": "a", "os": "linux"}, "ServiceWeights": {"Passing": 1, "Warning": 1},
        "ServicePort": 8080, "Weight": 1.5, "Offset": -3, "CreateIndex": 18446744073709551615u64,
        "ServiceEnableTagOverride": false, "ServiceAddress": "", "ServiceProxy": null,
        "EmptyTags": [], "EmptyMeta": {},
        "Checks": [
            {"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
            {"CheckID": "service:web", "Status": "critical", "ServiceTags": ["prod"]}
        ],
        "Nested": [[{"Name": "deep"}], {"Name": "shallow"}],
        "Service": {"Service": "web", "Tags": ["prod"], "Meta": {"k8s/app": "web"}}
    })
}

/// Parses `expression` (which must be valid) and evaluates it against [`consul_document`].
fn matches(expression: &str) -> bool {
    match Filter::parse(expression) {
        Ok(filter) => filter.matches(&consul_document()),
        Err(error) => panic!("expression {expression:?} should parse: {error}"),
    }
}

fn parse_error(expression: &str) -> FilterError {
    match Filter::parse(expression) {
        Ok(filter) => panic!("expression {expression:?} should not parse, got {filter:?}"),
        Err(error) => error,
    }
}

#[test]
fn equality_on_strings_in_every_value_form() {
    assert!(matches(r#"Node == "n1""#));
    assert!(matches("Node == n1"));
    assert!(matches("Node == `n1`"));
    assert!(matches("Node==n1"));
    assert!(!matches(r#"Node == "n2""#));
    assert!(matches(r#"Node != "n2""#));
    assert!(!matches("Node != n1"));
    assert!(matches("Address == 10.0.0.1"));
    assert!(!matches(r#"Node == "N1""#));
}

#[test]
fn equality_on_numbers_compares_numerically() {
    assert!(matches("ServicePort == 8080"));
    assert!(matches(r#"ServicePort == "8080""#));
    assert!(matches("ServicePort == 8080.0"));
    assert!(!matches("ServicePort == 8081"));
    assert!(!matches("ServicePort == eighty"));
    assert!(matches("Weight == 1.5"));
    assert!(matches("Weight == 15e-1"));
    assert!(matches("Offset == -3"));
    assert!(matches("CreateIndex == 18446744073709551615"));
    assert!(!matches("CreateIndex == 18446744073709551614"));
    assert!(matches("ServiceWeights.Passing == 1"));
}

#[test]
fn equality_on_bools_nulls_and_missing_values() {
    assert!(matches("ServiceEnableTagOverride == false"));
    assert!(!matches("ServiceEnableTagOverride == true"));
    assert!(matches("ServiceEnableTagOverride != true"));
    assert!(matches(r#"ServiceProxy == """#));
    assert!(matches(r#"DoesNotExist == """#));
    assert!(!matches("DoesNotExist == x"));
    assert!(matches("DoesNotExist != x"));
    assert!(matches("DoesNotExist.Deeper.Still != x"));
    assert!(!matches("ServiceTags == prod"), "an array never equals a scalar");
}

#[test]
fn in_and_contains_on_arrays_maps_and_strings() {
    assert!(matches(r#""prod" in ServiceTags"#));
    assert!(matches("prod in ServiceTags"));
    assert!(matches(r#""staging" not in ServiceTags"#));
    assert!(!matches(r#""prod" not in ServiceTags"#));
    assert!(matches(r#"ServiceTags contains "v2""#));
    assert!(matches("ServiceTags not contains v3"));
    assert!(matches(r#""version" in ServiceMeta"#));
    assert!(!matches(r#""2" in ServiceMeta"#), "maps test key presence, not values");
    assert!(matches("Node contains n"));
    assert!(matches(r#""dc" in Datacenter"#));
    assert!(!matches(r#"ServicePort contains "80""#));
    assert!(!matches("DoesNotExist contains x"));
    assert!(matches("DoesNotExist not contains x"));
}

#[test]
fn is_empty_and_is_not_empty() {
    for empty in ["ServiceAddress", "ServiceProxy", "EmptyTags", "EmptyMeta", "DoesNotExist", "Node.Deeper"] {
        assert!(matches(&format!("{empty} is empty")), "{empty} should be empty");
        assert!(!matches(&format!("{empty} is not empty")), "{empty} should be empty");
    }
    for full in ["Node", "ServiceTags", "ServiceMeta", "ServicePort", "ServiceEnableTagOverride"] {
        assert!(matches(&format!("{full} is not empty")), "{full} should not be empty");
    }
}

#[test]
fn matches_and_not_matches() {
    assert!(matches(r#"Node matches "^n[0-9]+$""#));
    assert!(matches("Node matches `^n\\d$`"));
    assert!(!matches(r#"Node not matches "^n""#));
    assert!(matches(r#"ServicePort matches "^80""#));
    assert!(matches(r#"ServiceEnableTagOverride matches "^f""#));
    assert!(!matches(r#"DoesNotExist matches ".*""#));
    assert!(matches(r#"Checks.CheckID matches "^service:""#));
}

#[test]
fn precedence_is_not_then_and_then_or() {
    // `or` binds loosest: true or (false and false).
    assert!(matches("Node == n1 or Node == n2 and Node == n3"));
    // `and` binds tighter: (false and true) or false.
    assert!(!matches("Node == n2 and Node == n1 or Node == n3"));
    // `not` binds tighter than `and`: (not false) and true.
    assert!(matches("not Node == n2 and Node == n1"));
    // (not true) or true.
    assert!(matches("not Node == n1 or Node == n1"));
    assert!(matches("not not Node == n1"));
}

#[test]
fn parentheses_override_precedence() {
    assert!(!matches("(Node == n1 or Node == n2) and Node == n3"));
    assert!(!matches("not (Node == n2 or Node == n1)"));
    assert!(matches("not(Node == n2)"));
    assert!(matches("((Node == n1))"));
    assert!(matches(" ( Node == n1 ) and ( ServicePort == 8080 or Node == x ) "));
}

#[test]
fn map_index_and_dotted_selectors() {
    assert!(matches(r#"ServiceMeta["version"] == "2""#));
    assert!(matches("ServiceMeta.version == 2"));
    assert!(matches(r#"NodeMeta["rack-1"] == a"#));
    assert!(matches("NodeMeta.rack-1 == a"));
    assert!(matches("NodeMeta[`rack-1`] == a"));
    assert!(matches(r#"NodeMeta[ "os" ] == linux"#));
    assert!(matches(r#"Service["Meta"].k8s/app == web"#));
    assert!(matches(r#"Service.Meta["k8s/app"] == web"#));
    assert!(matches("Service.Tags contains prod"));
    assert!(matches(r#""/Service/Meta/k8s~1app" == web"#), "json pointer selector");
    assert!(matches(r#""/ServiceMeta" contains team"#));
}

#[test]
fn arrays_of_objects_map_the_rest_of_the_path() {
    assert!(matches("Checks.Status == passing"));
    assert!(matches("Checks.Status == critical"));
    assert!(!matches("Checks.Status == warning"));
    assert!(matches("Checks.Status != warning"));
    assert!(!matches("Checks.Status != passing"), "!= is the negation of any-element ==");
    assert!(matches(r#""passing" in Checks.Status"#));
    assert!(matches("Checks.ServiceTags contains prod"));
    assert!(matches("Checks.0.Status == passing"));
    assert!(!matches("Checks.0.Status == critical"));
    assert!(matches("Checks.1.CheckID == service:web"));
    assert!(matches("Checks.5.Status is empty"));
    assert!(matches("Nested.Name == deep"));
    assert!(matches("Nested.Name == shallow"));
    assert!(matches("EmptyTags.Status is empty"));
    assert!(!matches(r#"EmptyTags.Status == """#));
    assert!(matches("Checks.Status is not empty"));
}

#[test]
fn documented_consul_examples() {
    let document = json!({
        "Node": "n1",
        "ServiceTags": ["prod"],
        "ServiceMeta": {"version": "2"},
        "Checks": [{"Status": "passing"}]
    });
    for expression in [
        r#""prod" in ServiceTags"#,
        r#"Node == "n1""#,
        "Checks.Status == `passing`",
        r#"ServiceMeta.version == "2" and not ("staging" in ServiceTags)"#,
    ] {
        let filter = Filter::parse(expression).unwrap();
        assert!(filter.matches(&document), "{expression}");
    }
    let top_level_status = Filter::parse("Status == `passing`").unwrap();
    assert!(!top_level_status.matches(&document));
    assert!(top_level_status.matches(&json!({"Status": "passing"})));
}

#[test]
fn string_escapes_are_decoded() {
    let document = json!({"Name": "a\"b\\c\nd\u{e9}\u{1F600}"});
    let filter = Filter::parse(r#"Name == "a\"b\\c\nd\u00e9\U0001F600""#).unwrap();
    assert!(filter.matches(&document));
    let raw = Filter::parse(r#"Name contains `a"b\c`"#).unwrap();
    assert!(raw.matches(&document));
    assert!(Filter::parse(r#"Name == "\x41\101\t""#).unwrap().matches(&json!({"Name": "AA\t"})));
    assert!(Filter::parse("Name == ``").unwrap().matches(&json!({})));
}

#[test]
fn keywords_are_case_sensitive_whole_words() {
    assert!(!matches("Node == android"), "a value that starts with a keyword");
    assert!(matches("Node != order and notes not in ServiceTags"));
    assert!(matches("Node == n1 and(Node == n1)or(Node == x)"));
    assert!(matches(r#"Node == n1 and "and" not in ServiceTags"#));
    assert!(Filter::parse("Node == n1 AND Node == n1").is_err());
    assert!(Filter::parse("Node == and").is_err());
    assert!(Filter::parse("not == x").is_err());
}

#[test]
fn error_cases_are_rejected_with_positions() {
    #[rustfmt::skip]
    let cases = [
        "(Node == n1", "Node == n1)", "not a valid expression((", "Node ==", "Node", "Node = n1", "== n1", "()",
        r#"Meta["x"] in ServiceTags"#, "Node == n1 not in x", r#"Meta["x"] not in ServiceTags"#,
        "Node is full", "Node not equals x", "Node == n1 and", "Node == n1 or or Node == n1",
        r#"Node == "unterminated"#, "Node == `unterminated", r#"Node == "bad \q escape""#,
        r#"Node == "\xff""#, r#"Node == "\ud800""#, "Node == \"line\nbreak\"",
        "Meta[foo] == x", r#"Meta["foo" == x"#, "Meta. == x", r#""not-a-pointer" == x"#, r#""prod" in"#,
    ];
    for expression in cases {
        let error = parse_error(expression);
        assert!(matches!(error, FilterError::Syntax { .. }), "{expression:?} gave {error:?}");
        assert_message_style(&error);
    }
}

#[test]
fn error_messages_say_what_and_where() {
    let error = parse_error("Node == n1 and Port ==");
    assert_eq!(
        error.to_string(),
        "failed to parse filter at position 22: expected a value, found the end of the expression"
    );
    let error = parse_error("(Node == n1");
    assert_eq!(
        error.to_string(),
        "failed to parse filter at position 11: expected ')' to close the '(' at position 0, found the end of the expression"
    );
    let error = parse_error("Node == n1)");
    assert_eq!(error.to_string(), "failed to parse filter at position 10: unexpected ')' without a matching '('");
}

#[test]
fn empty_and_over_long_expressions_are_rejected() {
    assert!(matches!(parse_error(""), FilterError::Empty));
    assert!(matches!(parse_error(" \t\r\n"), FilterError::Empty));

    let clause = "Node == n1 or ";
    let mut expression = clause.repeat((FILTER_EXPRESSION_BYTES_MAX - 20) / clause.len());
    expression.push_str("Node == n1");
    while expression.len() < FILTER_EXPRESSION_BYTES_MAX {
        expression.insert(0, ' ');
    }
    assert_eq!(expression.len(), FILTER_EXPRESSION_BYTES_MAX);
    assert!(Filter::parse(&expression).unwrap().matches(&consul_document()));

    expression.insert(0, ' ');
    let error = parse_error(&expression);
    assert!(matches!(error, FilterError::TooLong { length_bytes: 4097, .. }), "{error:?}");
    assert_message_style(&error);
}

#[test]
fn bad_or_oversized_regexes_are_parse_errors() {
    let error = parse_error(r#"Node matches "(unclosed""#);
    assert!(matches!(error, FilterError::InvalidRegex { position: 13, .. }), "{error:?}");
    assert_message_style(&error);
    assert!(!error.to_string().contains('\n'), "{error}");

    let error = parse_error("Node matches `\\w{1000}`");
    assert!(matches!(error, FilterError::InvalidRegex { .. }), "{error:?}");
    assert_message_style(&error);

    let under_limit = vec![r#"Node matches "n""#; FILTER_REGEX_COUNT_MAX].join(" and ");
    assert!(matches(&under_limit));
    let over_limit = vec![r#"Node matches "n""#; FILTER_REGEX_COUNT_MAX + 1].join(" and ");
    assert!(matches!(parse_error(&over_limit), FilterError::TooManyRegexes { .. }));
}

#[test]
fn nesting_is_limited() {
    let depth = FILTER_NESTING_DEPTH_MAX;
    let allowed = format!("{}Node == n1{}", "(".repeat(depth), ")".repeat(depth));
    assert!(matches(&allowed));
    let too_deep = format!("{}Node == n1{}", "(".repeat(depth + 1), ")".repeat(depth + 1));
    let error = parse_error(&too_deep);
    assert!(matches!(error, FilterError::TooDeep { position: 32, .. }), "{error:?}");
    assert_message_style(&error);

    assert!(matches(&format!("{}Node == n1", "not not ".repeat(depth / 2))));
    assert!(matches!(parse_error(&format!("{}Node == n1", "not ".repeat(depth + 1))), FilterError::TooDeep { .. }));
    assert!(matches!(parse_error(&"(".repeat(4000)), FilterError::TooDeep { .. }));
    assert!(matches!(parse_error(&"not ".repeat(1000)), FilterError::TooDeep { .. }));
}

#[test]
fn deep_documents_do_not_exhaust_the_stack() {
    let mut document = json!({"Status": "passing"});
    for _ in 0..10_000 {
        document = Value::Array(vec![document]);
    }
    assert!(Filter::parse("Status == passing").unwrap().matches(&document));
    // serde_json drops nested values recursively, so take this one apart a level at a time.
    let mut current = document;
    while let Value::Array(mut items) = current {
        current = items.pop().unwrap_or(Value::Null);
    }
}

fn assert_message_style(error: &FilterError) {
    let message = error.to_string();
    assert!(message.starts_with(|first: char| first.is_ascii_lowercase()), "{message}");
    assert!(!message.ends_with('.'), "{message}");
}

/// A deterministic linear congruential generator (Knuth's MMIX constants), so that the fuzz
/// loop needs no extra crates and any failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Builds a random valid expression from a few clauses, `not`, parentheses, `and` and `or`.
fn random_expression(random: &mut Lcg, depth: usize) -> String {
    let clauses: Vec<&str> = concat!(
        "Node == n1|Checks.Status != `passing`|\"prod\" in ServiceTags|ServiceMeta[\"version\"] is not empty|",
        "Checks.0.CheckID matches \"^s\"|Weight == 1.5|Missing is empty|x not in NodeMeta|Node contains \"\\u00e9\""
    )
    .split('|')
    .collect();
    match random.below(if depth > 4 { 1 } else { 4 }) {
        0 => clauses[random.below(clauses.len())].to_string(),
        1 => format!("not {}", random_expression(random, depth + 1)),
        2 => format!("({})", random_expression(random, depth + 1)),
        _ => {
            let operator = if random.below(2) == 0 { "and" } else { "or" };
            format!("{} {operator} {}", random_expression(random, depth + 1), random_expression(random, depth + 1))
        }
    }
}

/// Random bytes, random grammar fragments, and valid expressions with one byte changed, so that
/// both the error paths and evaluation see many shapes of input.
#[test]
fn random_inputs_never_panic() {
    // Grammar pieces separated by '|', so that random concatenations often get past the lexer.
    let fragments: Vec<&str> = concat!(
        "Node|Checks|.|Status|[|]|\"|`|(|)| |==|!=|and|or|not|in|contains|matches|is|empty|\\|8080|-|x|",
        "\"/a/b\"|ServiceMeta[\"version\"]|\n|\"prod\"|`.*`|\\u|é"
    )
    .split('|')
    .collect();
    let documents = [consul_document(), Value::Null, json!([1, "two", [null], {"Node": "n1"}])];
    let mut random = Lcg(0x5eed);
    let (mut parsed_count, mut matched_count) = (0, 0);
    for round in 0..30_000 {
        let length = random.below(48);
        let expression = match round % 3 {
            0 => String::from_utf8_lossy(&(0..length).map(|_| random.next() as u8).collect::<Vec<u8>>()).into_owned(),
            1 => (0..length).map(|_| fragments[random.below(fragments.len())]).collect(),
            _ => {
                let mut bytes = random_expression(&mut random, 0).into_bytes();
                let at = random.below(bytes.len() + 1);
                match random.below(3) {
                    0 => {}
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, b"()\"`[]. !=-"[random.below(11)]),
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        if let Ok(filter) = Filter::parse(&expression) {
            parsed_count += 1;
            matched_count += documents.iter().filter(|document| filter.matches(document)).count();
        }
    }
    assert!(parsed_count > 5_000, "only {parsed_count} random expressions parsed");
    assert!(matched_count > 0, "no random expression matched a document");
}
