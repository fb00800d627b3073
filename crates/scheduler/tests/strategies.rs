//! Data-driven tests of placement strategies and their combinations, of resource accounting
//! within and across requests, and of the failure reasons for each resource. The fixture format
//! is described in `fixture/mod.rs`.

mod fixture;

use fixture::check;

const ZONES: &str = "
instance a1 az=us-east-1a memory=4096
instance a2 az=us-east-1a memory=4096
instance b1 az=us-east-1b memory=4096
instance c1 az=us-east-1c memory=4096
";

#[test]
fn spread_over_availability_zones_lands_four_three_three() {
    // The acceptance case: ten tasks on three zones.
    check(
        "
        instance a az=us-east-1a memory=8192
        instance b az=us-east-1b memory=8192
        instance c az=us-east-1c memory=8192
        place count=10 memory=256 group=service:web
        strategy spread attribute:ecs.availability-zone
        ",
        "placed: b a c b a c b a c b",
    );
}

#[test]
fn service_default_spreads_zones_then_instances() {
    check(
        &format!(
            "{ZONES}
            place count=8 memory=256 group=service:web
            strategy spread attribute:ecs.availability-zone
            strategy spread instanceId
            "
        ),
        "placed: a2 b1 c1 a1 b1 c1 a2 b1",
    );
}

#[test]
fn spread_counts_the_groups_existing_tasks() {
    // Zone a already runs two tasks of the service: the next two go elsewhere.
    check(
        "
        instance a az=us-east-1a tasks=service:web,service:web,service:other
        instance b az=us-east-1b tasks=service:other,service:other
        instance c az=us-east-1c tasks=service:web
        place count=3 memory=256 group=service:web
        strategy spread attribute:ecs.availability-zone
        ",
        "placed: b b c",
    );
}

#[test]
fn spread_on_instance_id_and_its_host_alias() {
    check(
        "
        instance a tasks=service:web
        instance b
        place count=3 memory=256 group=service:web
        strategy spread host
        ",
        "placed: b b a",
    );
}

#[test]
fn spread_treats_a_missing_attribute_as_one_more_value() {
    check(
        "
        instance a az=us-east-1a
        instance b
        place count=4 memory=256 group=service:web
        strategy spread attribute:ecs.availability-zone
        ",
        "placed: b a b a",
    );
}

#[test]
fn binpack_memory_fills_one_instance_first() {
    check(
        "
        instance a memory=2048
        instance b memory=1536
        instance c memory=4096
        place count=6 memory=512
        strategy binpack memory
        ",
        "placed: b b b a a a",
    );
}

#[test]
fn binpack_cpu_picks_the_least_remaining_cpu_that_still_fits() {
    check(
        "
        instance a cpu=300 memory=4096
        instance b cpu=1024 memory=4096
        instance c cpu=600 memory=4096
        place count=4 cpu=256 memory=128
        strategy binpack cpu
        ",
        "placed: a c c b",
    );
}

#[test]
fn random_is_seeded() {
    let fixture = |seed: u64| {
        format!(
            "
            instance a
            instance b
            instance c
            instance d
            place count=6 memory=128 seed={seed}
            strategy random
            "
        )
    };
    check(&fixture(1), "placed: c c d b b d");
    check(&fixture(2), "placed: c c c d b b");
    assert_eq!(fixture::run(&fixture(1)), fixture::run(&fixture(1)));
}

#[test]
fn no_strategy_means_random() {
    check(
        "
        instance a
        instance b
        place count=4 memory=128 seed=3
        ",
        "placed: a b b a",
    );
}

#[test]
fn spread_zones_then_binpack_memory_within_each_zone() {
    check(
        "
        instance a1 az=us-east-1a memory=1024
        instance a2 az=us-east-1a memory=3072
        instance b1 az=us-east-1b memory=4096
        instance b2 az=us-east-1b memory=2048
        place count=6 memory=512 group=service:web
        strategy spread attribute:ecs.availability-zone
        strategy binpack memory
        ",
        "placed: a1 b2 a1 b2 b2 a2",
    );
}

#[test]
fn spread_zones_then_random_within_the_zone() {
    check(
        &format!(
            "{ZONES}
            place count=6 memory=256 group=service:web seed=5
            strategy spread attribute:ecs.availability-zone
            strategy random
            "
        ),
        "placed: a2 c1 b1 a1 b1 c1",
    );
}

#[test]
fn binpack_then_spread_zones_uses_the_scan() {
    // An attribute spread after binpack only breaks binpack's ties: the scan path.
    check(
        "
        instance a1 az=us-east-1a memory=2048
        instance a2 az=us-east-1a memory=2048
        instance b1 az=us-east-1b memory=2048
        place count=4 memory=1024 group=service:web
        strategy binpack memory
        strategy spread attribute:ecs.availability-zone
        ",
        "placed: a2 a2 b1 b1",
    );
}

#[test]
fn binpack_then_random_breaks_ties_randomly() {
    check(
        "
        instance a memory=2048
        instance b memory=2048
        instance c memory=4096
        place count=3 memory=1024 seed=9
        strategy binpack memory
        strategy random
        ",
        "placed: b b a",
    );
}

#[test]
fn strategies_combine_with_constraints() {
    check(
        &format!(
            "{ZONES}
            instance d1 az=us-east-1d memory=4096 attr:stack=dev
            place count=4 memory=256 group=service:web
            constraint memberOf attribute:stack !exists
            constraint distinctInstance
            strategy spread attribute:ecs.availability-zone
            strategy binpack memory
            "
        ),
        "placed: a2 b1 c1 a1",
    );
}

#[test]
fn each_resource_has_its_reason() {
    check(
        "
        instance cpu cpu=100
        instance mem memory=100
        instance port ports=22,80
        instance udp udp=53
        instance gpu gpus=g0
        instance off agent=off
        instance drain status=DRAINING
        place count=1 cpu=256 memory=512 ports=80,udp:53 gpu=2
        ",
        "placed:
        unplaced: 1
          cpu RESOURCE:CPU
          mem RESOURCE:MEMORY
          port RESOURCE:PORTS
          udp RESOURCE:PORTS
          gpu RESOURCE:GPU
          off AGENT
        event: service family:app was unable to place a task because no container instance met all of its requirements. The closest matching container-instance gpu encountered error \"RESOURCE:GPU\". For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
    );
}

#[test]
fn the_closest_instance_names_the_memory_shortage() {
    check(
        "
        instance a cpu=100
        instance b memory=100
        place count=1 cpu=256 memory=512 group=service:web
        ",
        "placed:
        unplaced: 1
          a RESOURCE:CPU
          b RESOURCE:MEMORY
        event: service web was unable to place a task because no container instance met all of its requirements. The closest matching container-instance b has insufficient memory available. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
    );
    check(
        "
        instance a ports=80
        place count=1 ports=80 group=service:web
        ",
        "placed:
        unplaced: 1
          a RESOURCE:PORTS
        event: service web was unable to place a task because no container instance met all of its requirements. The closest matching container-instance a is already using a port required by your task. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
    );
}

#[test]
fn no_active_instance() {
    check(
        "
        instance a status=DRAINING
        place count=2 group=service:web
        ",
        "placed:
        unplaced: 2
        event: service web was unable to place a task because no container instance met all of its requirements.",
    );
}

#[test]
fn a_plan_accounts_for_its_own_tasks_ports_and_gpus() {
    check(
        "
        instance a memory=1024 gpus=g1,g0,g2 ports=22
        place count=3 memory=256 ports=80 gpu=1
        ",
        "placed: a
          task 0 gpus g0
        unplaced: 2
          a RESOURCE:PORTS
        event: service family:app was unable to place a task because no container instance met all of its requirements. The closest matching container-instance a is already using a port required by your task. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
    );
    check(
        "
        instance a memory=1024 gpus=g1,g0,g2
        place count=4 memory=256 gpu=1
        ",
        "placed: a a a
          task 0 gpus g0
          task 1 gpus g1
          task 2 gpus g2
        unplaced: 1
          a RESOURCE:GPU
        event: service family:app was unable to place a task because no container instance met all of its requirements. The closest matching container-instance a encountered error \"RESOURCE:GPU\". For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
    );
}

#[test]
fn later_requests_see_earlier_ones() {
    check(
        "
        instance a memory=1024 az=us-east-1a
        instance b memory=1536 az=us-east-1b
        place count=1 memory=1024 group=service:db
        strategy binpack memory
        place count=2 memory=512 group=service:web
        strategy spread attribute:ecs.availability-zone
        ",
        "placed: a
        placed: b b",
    );
}

#[test]
fn strategy_validation() {
    let strategies = "strategy random\n".repeat(6);
    check(
        &format!("instance a\nplace count=1\n{strategies}"),
        "error: InvalidParameterException: You can specify a maximum of 5 strategy rules per task; 6 were given.",
    );
    check(
        "instance a\nplace count=1\nstrategy binpack disk",
        "error: InvalidParameterException: Invalid binpack field 'disk'. Valid fields are cpu and memory.",
    );
    check(
        "instance a\nplace count=1\nstrategy spread",
        "error: InvalidParameterException: spread field should be specified.",
    );
    check(
        "instance a\nplace count=1\nstrategy spread zone",
        "error: InvalidParameterException: Invalid spread field 'zone'. Valid fields are instanceId, host or attribute:<name>.",
    );
    check(
        "instance a\nplace count=1\nstrategy pack cpu",
        "error: InvalidParameterException: 1 validation error detected: Value 'pack' at 'placementStrategy.1.member.type' failed to satisfy constraint: Member must satisfy enum value set: [random, spread, binpack]",
    );
    // binpack's field is case-insensitive (tools send MEMORY); random ignores a field.
    check(
        "instance a\nplace count=1\nstrategy binpack MEMORY\nstrategy random ignored",
        "placed: a",
    );
}
