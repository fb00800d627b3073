//! Data-driven tests of placement constraints: every query-language operator and subject as a
//! `memberOf` constraint, `distinctInstance`, how task-definition and request constraints
//! combine, and AWS's validation. The fixture format is described in `fixture/mod.rs`.

mod fixture;

use fixture::check;

const THREE: &str = "
instance a az=us-east-1a type=t2.micro attr:stack=prod attr:cores=8  registered=2018-01-01 ec2=i-aaa version=1.14.5
instance b az=us-east-1b type=m5.large attr:stack=dev  attr:cores=16 registered=2018-06-18T12:00:00Z ec2=i-bbb version=1.9.0
instance c az=us-east-1c type=t2.large attr:flag       attr:cores=32 registered=2019-03-01 ec2=i-ccc
";

/// Places one task with `expression` and renders the result, so each operator reads as one line.
fn member_of(expression: &str, expected: &str) {
    check(
        &format!("{THREE}\nplace count=3 memory=2048\nconstraint memberOf {expression}"),
        expected,
    );
}

#[test]
fn equals_and_not_equals() {
    member_of("attribute:stack == prod", "placed: a
        unplaced: 2
          a RESOURCE:MEMORY
          b MemberOf placement constraint unsatisfied.
          c MemberOf placement constraint unsatisfied.
        event: service family:app was unable to place a task because no container instance met all of its requirements. The closest matching container-instance b encountered error \"MemberOf placement constraint unsatisfied.\". For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.");
    // `!=` needs the attribute: c has no `stack`, so only b qualifies.
    member_of("attribute:stack != prod", "placed: b
        unplaced: 2
          a MemberOf placement constraint unsatisfied.
          b RESOURCE:MEMORY
          c MemberOf placement constraint unsatisfied.
        event: service family:app was unable to place a task because no container instance met all of its requirements. The closest matching container-instance a encountered error \"MemberOf placement constraint unsatisfied.\". For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.");
    member_of("attribute:ecs.instance-type equals m5.large", "placed: b
        unplaced: 2
          a MemberOf placement constraint unsatisfied.
          b RESOURCE:MEMORY
          c MemberOf placement constraint unsatisfied.
        event: service family:app was unable to place a task because no container instance met all of its requirements. The closest matching container-instance a encountered error \"MemberOf placement constraint unsatisfied.\". For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.");
}

/// Renders only the placements: enough for the operators below.
fn member_of_places(expression: &str, placed: &str) {
    let fixture = format!("{THREE}\nplace count=3 memory=2048\nconstraint memberOf {expression}");
    let actual = fixture::run(&fixture);
    let first = actual.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!("placed: {placed}").trim_end(),
        "{expression}"
    );
}

#[test]
fn ordering_operators_compare_numbers_as_numbers() {
    member_of_places("attribute:cores > 8", "c b");
    member_of_places("attribute:cores >= 16", "c b");
    member_of_places("attribute:cores < 16", "a");
    member_of_places("attribute:cores <= 16", "b a");
    member_of_places("attribute:cores greater_than 100", "");
}

#[test]
fn exists_and_not_exists() {
    member_of_places("attribute:flag exists", "c");
    member_of_places("attribute:stack exists", "b a");
    member_of_places("attribute:stack !exists", "c");
    member_of_places("attribute:flag not_exists", "b a");
}

#[test]
fn in_and_not_in() {
    member_of_places(
        "attribute:ecs.availability-zone in [us-east-1a, us-east-1c]",
        "c a",
    );
    member_of_places("attribute:ecs.availability-zone in (us-east-1b)", "b");
    member_of_places(
        "attribute:ecs.availability-zone !in [us-east-1a, us-east-1c]",
        "b",
    );
    member_of_places(
        "attribute:ecs.availability-zone not_in ['us-east-1b']",
        "c a",
    );
}

#[test]
fn matches_and_not_matches() {
    member_of_places("attribute:ecs.instance-type =~ t2.*", "c a");
    member_of_places("attribute:ecs.instance-type !~ t2.*", "b");
    member_of_places("attribute:ecs.instance-type =~ (t2|m5).large", "c b");
    // Whole-value match, as Java's String.matches: `large` alone matches nothing.
    member_of_places("attribute:ecs.instance-type =~ large", "");
}

#[test]
fn boolean_operators_and_parentheses() {
    member_of_places(
        "attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1c",
        "a",
    );
    member_of_places("attribute:stack == prod or attribute:flag exists", "c a");
    member_of_places("not(attribute:stack == prod)", "c b");
    member_of_places(
        "(attribute:stack == dev or attribute:stack == prod) && !(attribute:cores > 10)",
        "a",
    );
}

#[test]
fn instance_fields() {
    member_of_places("registeredAt < 2018-02-13", "a");
    member_of_places("registeredAt >= 2018-06-18T12:00:00+00:00", "c b");
    member_of_places("ec2InstanceId in [i-aaa, i-ccc]", "c a");
    member_of_places("ec2InstanceId =~ i-b.*", "b");
    member_of_places("agentVersion < 1.10.0", "b");
    member_of_places("agentConnected == true", "c b a");
}

#[test]
fn disconnected_agents_are_refused_before_anything_else() {
    check(
        "
        instance a agent=off
        instance b agent=off memory=10
        place count=1 memory=512
        ",
        "placed:
        unplaced: 1
          a AGENT
          b AGENT
        event: service family:app was unable to place a task because no container instance met all of its requirements. The closest matching container-instance a encountered error \"AGENT\". For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
    );
}

#[test]
fn task_group_affinity_and_anti_affinity_see_the_plan() {
    // Affinity: only next to a database task.
    check(
        "
        instance a tasks=database
        instance b
        place count=2 memory=512 group=service:web
        constraint memberOf task:group == database
        ",
        "placed: a a",
    );
    // Anti-affinity with its own group: the first task blocks the instance for the second.
    check(
        "
        instance a
        instance b
        place count=3 memory=512 group=service:web
        constraint memberOf not(task:group == service:web)
        ",
        "placed: b a
        unplaced: 1
          a MemberOf placement constraint unsatisfied.
          b MemberOf placement constraint unsatisfied.
        event: service web was unable to place a task because no container instance met all of its requirements. The closest matching container-instance a encountered error \"MemberOf placement constraint unsatisfied.\". For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
    );
}

#[test]
fn affinity_can_become_true_later() {
    // b is refused for lack of a database task, then gets one: the same request must now fit.
    check(
        "
        instance a tasks=service:db memory=512
        instance b memory=2048
        place count=1 memory=512 group=service:web
        constraint memberOf task:group == service:db
        place count=1 memory=512 group=service:db
        place count=1 memory=512 group=service:web
        constraint memberOf task:group == service:db
        ",
        "placed: a
        placed: b
        placed: b",
    );
}

#[test]
fn running_tasks_count_counts_the_plan_too() {
    check(
        "
        instance a running=1
        instance b running=0
        place count=4 memory=256
        constraint memberOf runningTasksCount < 2
        strategy binpack memory
        ",
        "placed: b b a
        unplaced: 1
          a MemberOf placement constraint unsatisfied.
          b MemberOf placement constraint unsatisfied.
        event: service family:app was unable to place a task because no container instance met all of its requirements. The closest matching container-instance a encountered error \"MemberOf placement constraint unsatisfied.\". For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
    );
}

#[test]
fn distinct_instance_refuses_a_fourth_task_on_three_instances() {
    check(
        "
        instance a
        instance b
        instance c
        place count=4 memory=256 group=service:web
        constraint distinctInstance
        ",
        "placed: c b a
        unplaced: 1
          a DistinctInstance placement constraint unsatisfied.
          b DistinctInstance placement constraint unsatisfied.
          c DistinctInstance placement constraint unsatisfied.
        event: service web was unable to place a task because no container instance met all of its requirements. The closest matching container-instance a encountered error \"DistinctInstance placement constraint unsatisfied.\". For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
    );
    // Only tasks of the same group count; existing tasks of the group do.
    check(
        "
        instance a tasks=service:web
        instance b tasks=service:other
        place count=1 memory=256 group=service:web
        constraint distinctInstance
        ",
        "placed: b",
    );
}

#[test]
fn task_definition_and_request_constraints_all_apply() {
    check(
        "
        instance a os=linux attr:stack=prod
        instance b os=linux attr:stack=dev
        instance c os=windows attr:stack=prod
        place count=1 memory=256
        taskdef memberOf attribute:ecs.os-type == linux
        constraint memberOf attribute:stack == prod
        ",
        "placed: a",
    );
}

#[test]
fn constraint_validation() {
    check(
        "instance a\nplace count=1\nconstraint distinctInstance attribute:x == y",
        "error: InvalidParameterException: distinctInstance expression should not be specified.",
    );
    check(
        "instance a\nplace count=1\nconstraint memberOf",
        "error: InvalidParameterException: memberOf expression should be specified.",
    );
    check(
        "instance a\nplace count=1\nconstraint sameZone",
        "error: InvalidParameterException: 1 validation error detected: Value 'sameZone' at 'placementConstraints.1.member.type' failed to satisfy constraint: Member must satisfy enum value set: [distinctInstance, memberOf]",
    );
    check(
        "instance a\nplace count=1\ntaskdef distinctInstance",
        "error: ClientException: constraint.type 'distinctInstance' is not supported.",
    );
    check(
        "instance a\nplace count=1\nconstraint memberOf attribute:stack = prod",
        "error: InvalidParameterException: The expression 'attribute:stack = prod' is invalid: unknown operator '=' at position 17.",
    );
    let eleven = "constraint memberOf attribute:a exists\n".repeat(6)
        + &"taskdef memberOf attribute:b exists\n".repeat(5);
    check(
        &format!("instance a\nplace count=1\n{eleven}"),
        "error: InvalidParameterException: You can specify up to 10 constraints per task (including constraints in the task definition and those specified at runtime); 11 were given.",
    );
}
