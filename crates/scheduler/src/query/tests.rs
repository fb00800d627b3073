//! Parser and evaluator tests: every operator in both spellings, precedence, argument typing,
//! and the malformed expressions AWS refuses.

use std::collections::BTreeMap;

use super::*;
use crate::snapshot::{ContainerInstance, ContainerInstanceStatus, Resources, TaskOnInstance};

fn instance() -> ContainerInstance {
    let attributes: BTreeMap<String, Option<String>> = [
        ("ecs.instance-type", Some("t2.micro")),
        ("ecs.availability-zone", Some("us-east-1a")),
        ("ecs.os-type", Some("linux")),
        ("cores", Some("16")),
        ("stack", Some("prod")),
        ("flag", None),
        ("label", Some("two words")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.map(str::to_owned)))
    .collect();
    ContainerInstance {
        container_instance_arn: "arn:aws:ecs:us-east-1:123456789012:container-instance/default/abc"
            .to_owned(),
        ec2_instance_id: Some("i-abcd1234".to_owned()),
        status: ContainerInstanceStatus::Active,
        agent_connected: true,
        agent_version: Some("1.14.5".to_owned()),
        registered_at: parse_timestamp("2018-06-18T22:28:28Z").unwrap(),
        registered: Resources::default(),
        remaining: Resources::default(),
        attributes,
        running_tasks_count: 1,
        tasks: vec![TaskOnInstance {
            group: "service:production".to_owned(),
            family: "web".to_owned(),
        }],
    }
}

fn eval(text: &str) -> bool {
    Expression::parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .matches(&instance())
}

fn error(text: &str) -> String {
    match Expression::parse(text) {
        Ok(e) => panic!("{text} parsed as {e:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_operator_in_both_spellings() {
    let cases = [
        (
            "attribute:stack == prod",
            "attribute:stack equals prod",
            true,
        ),
        (
            "attribute:stack != prod",
            "attribute:stack not_equals prod",
            false,
        ),
        (
            "attribute:cores > 8",
            "attribute:cores greater_than 8",
            true,
        ),
        (
            "attribute:cores >= 16",
            "attribute:cores greater_than_equal 16",
            true,
        ),
        (
            "attribute:cores < 16",
            "attribute:cores less_than 16",
            false,
        ),
        (
            "attribute:cores <= 16",
            "attribute:cores less_than_equal 16",
            true,
        ),
        ("attribute:stack exists", "attribute:stack exists", true),
        ("attribute:nope !exists", "attribute:nope not_exists", true),
        (
            "attribute:stack in [dev, prod]",
            "attribute:stack in (dev, prod)",
            true,
        ),
        (
            "attribute:stack !in [dev, test]",
            "attribute:stack not_in [dev, test]",
            true,
        ),
        (
            "attribute:ecs.instance-type =~ t2.*",
            "attribute:ecs.instance-type matches t2.*",
            true,
        ),
        (
            "attribute:ecs.instance-type !~ t2.*",
            "attribute:ecs.instance-type not_matches t2.*",
            false,
        ),
    ];
    for (symbol, word, expected) in cases {
        assert_eq!(eval(symbol), expected, "{symbol}");
        assert_eq!(eval(word), expected, "{word}");
    }
}

#[test]
fn the_documented_examples() {
    assert!(eval("attribute:ecs.instance-type == t2.micro"));
    assert!(eval(
        "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]"
    ));
    assert!(eval(
        "attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1d"
    ));
    assert!(eval("task:group == service:production"));
    assert!(eval("not(task:group == database)"));
    assert!(eval("runningTasksCount == 1"));
    assert!(!eval("agentVersion < 1.14.5"));
    assert!(eval("agentVersion < 1.15.0"));
    assert!(eval("registeredAt < 2018-06-19"));
    assert!(!eval("registeredAt < 2018-02-13"));
    assert!(eval("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']"));
}

#[test]
fn precedence_and_grouping() {
    // `and` binds tighter than `or`.
    assert!(eval(
        "attribute:stack == dev and attribute:cores > 100 or attribute:stack == prod"
    ));
    assert!(!eval(
        "attribute:stack == dev and (attribute:cores > 100 or attribute:stack == prod)"
    ));
    assert!(eval(
        "attribute:stack == prod && !(attribute:stack == dev) || attribute:nope exists"
    ));
    assert!(eval(
        "NOT attribute:stack == dev AND attribute:stack == prod"
    ));
    assert!(eval("((attribute:stack == prod))"));
    // A regular expression with parentheses inside a group.
    assert!(eval(
        "(attribute:ecs.instance-type =~ (t2|m5).micro) and attribute:stack == prod"
    ));
}

#[test]
fn absent_and_valueless_subjects() {
    assert!(!eval("attribute:nope == x"));
    assert!(!eval("attribute:nope != x"), "AWS: != needs the attribute");
    assert!(!eval("attribute:nope !in [x]"));
    assert!(!eval("attribute:nope !~ x"));
    assert!(eval("attribute:flag exists"));
    assert!(!eval("attribute:flag == x"));
    assert!(eval("attribute:flag != x"));
    assert!(!eval("attribute:flag > 1"));
    assert!(eval("attribute:label == 'two words'"));
    assert!(eval("attribute:label in [\"two words\", other]"));
}

#[test]
fn task_group_is_a_set() {
    assert!(eval("task:group exists"));
    assert!(!eval("task:group !exists"));
    assert!(eval("task:group =~ service:.*"));
    assert!(!eval("task:group != service:production"));
    assert!(eval("task:group != database"));
    assert!(eval("task:group !in [database, cache]"));
}

#[test]
fn typed_subjects() {
    assert!(eval("agentConnected == true"));
    assert!(!eval("agentConnected != true"));
    assert!(eval("agentConnected in [true]"));
    assert!(eval("agentConnected =~ tr.*"));
    assert!(eval("runningTasksCount < 2"));
    assert!(eval("runningTasksCount != 0"));
    assert!(eval("registeredAt == 2018-06-18T22:28:28+00:00"));
    assert!(eval("registeredAt >= 2018-06-18T22:28:28"));
    // 20:00 at UTC−3 is 23:00 UTC, after the registration.
    assert!(!eval("registeredAt > 2018-06-18T20:00:00-03:00"));
    assert!(eval("ec2InstanceId =~ i-.*"));
}

#[test]
fn depends_on_tasks() {
    let parse = |t: &str| Expression::parse(t).unwrap().depends_on_tasks();
    assert!(!parse("attribute:stack == prod"));
    assert!(parse("attribute:stack == prod and not(task:group == db)"));
    assert!(parse("runningTasksCount < 3 or attribute:stack == prod"));
}

#[test]
fn malformed_expressions() {
    assert_eq!(error(""), "The expression is empty.");
    assert_eq!(error("   "), "The expression is empty.");
    assert_eq!(
        error(&format!("attribute:a == {}", "x".repeat(2000))),
        "The expression is 2015 characters long; the maximum is 2000."
    );
    assert_eq!(
        error("attribute:stack prod"),
        "The expression 'attribute:stack prod' is invalid: unknown operator 'prod' at position 17."
    );
    assert_eq!(
        error("attribute:stack =="),
        "The expression 'attribute:stack ==' is invalid: expected a value at position 19."
    );
    assert_eq!(
        error("attribute:stack"),
        "The expression 'attribute:stack' is invalid: expected an operator at position 16."
    );
    assert_eq!(
        error("stack == prod"),
        "The expression 'stack == prod' is invalid: unknown subject 'stack'. Valid subjects are attribute:<name>, agentConnected, agentVersion, ec2InstanceId, registeredAt, runningTasksCount and task:group."
    );
    assert_eq!(
        error("attribute: == prod"),
        "The expression 'attribute: == prod' is invalid: unknown subject 'attribute:'. Valid subjects are attribute:<name>, agentConnected, agentVersion, ec2InstanceId, registeredAt, runningTasksCount and task:group."
    );
    assert_eq!(
        error("(attribute:stack == prod"),
        "The expression '(attribute:stack == prod' is invalid: expected ')' at position 25."
    );
    assert_eq!(
        error("attribute:stack == prod)"),
        "The expression 'attribute:stack == prod)' is invalid: expected 'and', 'or' or the end of the expression at position 24."
    );
    assert_eq!(
        error("attribute:stack == prod and"),
        "The expression 'attribute:stack == prod and' is invalid: expected a subject such as attribute:<name> at position 28."
    );
    assert_eq!(
        error("attribute:stack == prod garbage"),
        "The expression 'attribute:stack == prod garbage' is invalid: expected 'and', 'or' or the end of the expression at position 25."
    );
    assert_eq!(
        error("attribute:stack in [a, b"),
        "The expression 'attribute:stack in [a, b' is invalid: expected ',' or ']' at position 25."
    );
    assert_eq!(
        error("attribute:stack in a"),
        "The expression 'attribute:stack in a' is invalid: expected an argument list such as [a, b] at position 20."
    );
    assert_eq!(
        error("attribute:stack in []"),
        "The expression 'attribute:stack in []' is invalid: expected a list item at position 21."
    );
    assert_eq!(
        error("attribute:stack == 'prod"),
        "The expression 'attribute:stack == 'prod' is invalid: expected a closing quote at position 25."
    );
    assert_eq!(
        error("attribute:x =~ t2.(["),
        "The expression 'attribute:x =~ t2.([' is invalid: 't2.([' is not a valid regular expression."
    );
    assert_eq!(
        error("registeredAt > yesterday"),
        "The expression 'registeredAt > yesterday' is invalid: 'yesterday' is not a valid value for registeredAt; valid formats are 2018-06-18T22:28:28+00:00, 2018-06-18T22:28:28Z, 2018-06-18T22:28:28 and 2018-06-18."
    );
    assert_eq!(
        error("runningTasksCount < many"),
        "The expression 'runningTasksCount < many' is invalid: 'many' is not a valid value for runningTasksCount; expected a whole number."
    );
    assert_eq!(
        error("agentConnected == yes"),
        "The expression 'agentConnected == yes' is invalid: 'yes' is not a valid value for agentConnected; expected true or false."
    );
    assert_eq!(
        error("agentConnected > true"),
        "The expression 'agentConnected > true' is invalid: operator '>' is not supported for agentConnected."
    );
    assert_eq!(
        error("registeredAt exists"),
        "The expression 'registeredAt exists' is invalid: operator 'exists' is not supported for registeredAt."
    );
    assert_eq!(
        error("task:group > a"),
        "The expression 'task:group > a' is invalid: operator '>' is not supported for task:group."
    );
    assert_eq!(
        error("ec2InstanceId < i-1"),
        "The expression 'ec2InstanceId < i-1' is invalid: operator '<' is not supported for ec2InstanceId."
    );
    assert_eq!(
        error("not"),
        "The expression 'not' is invalid: expected a subject such as attribute:<name> at position 4."
    );
}

#[test]
fn max_length_is_inclusive() {
    let at_limit = format!("attribute:a == {}", "x".repeat(MAX_EXPRESSION_LENGTH - 15));
    assert_eq!(at_limit.len(), MAX_EXPRESSION_LENGTH);
    assert!(Expression::parse(&at_limit).is_ok());
}

#[test]
fn how_expressions_move_as_tasks_are_added() {
    let trend = |t: &str| Expression::parse(t).unwrap().as_tasks_are_added();
    assert_eq!(trend("attribute:stack == prod"), Trend::Constant);
    assert_eq!(trend("task:group == db"), Trend::Rising);
    assert_eq!(trend("not(task:group == db)"), Trend::Falling);
    assert_eq!(trend("task:group !in [db, cache]"), Trend::Falling);
    assert_eq!(
        trend("runningTasksCount < 3 and attribute:stack == prod"),
        Trend::Falling
    );
    assert_eq!(
        trend("runningTasksCount >= 3 or task:group exists"),
        Trend::Rising
    );
    assert_eq!(trend("runningTasksCount == 3"), Trend::Either);
    assert_eq!(
        trend("task:group == db or runningTasksCount < 3"),
        Trend::Either
    );
}
