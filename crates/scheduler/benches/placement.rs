//! Placement throughput of the scheduler alone (no store), at 1,000 and 10,000 simulated
//! container instances, 100,000 tasks each, with a `memberOf` constraint and the
//! spread-then-binpack chain of the performance goal.
//!
//! Run: `cargo bench -p scheduler --bench placement`. Prints, per scenario and size, the
//! placements per second (median of interleaved repetitions, raw runs beside it), p50/p99 time
//! per request, and the 10,000 ÷ 1,000 ratio. It never fails on timing.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use scheduler::{
    BinpackField, ContainerInstance, ContainerInstanceStatus, PlacementConstraint,
    PlacementRequest, PlacementStrategy, Resources, Scheduler, Snapshot, SpreadField,
    TaskRequirements,
};

const TASKS: u32 = 100_000;
const REPETITIONS: usize = 3;

fn snapshot(instances: usize) -> Snapshot {
    let container_instances = (0..instances)
        .map(|i| {
            let mut attributes = BTreeMap::new();
            let zone = ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3];
            attributes.insert("ecs.availability-zone".to_owned(), Some(zone.to_owned()));
            attributes.insert(
                "ecs.instance-type".to_owned(),
                Some("m5.4xlarge".to_owned()),
            );
            attributes.insert("ecs.os-type".to_owned(), Some("linux".to_owned()));
            // One instance in ten is not in the stack the constraint asks for.
            let stack = if i % 10 == 9 { "dev" } else { "prod" };
            attributes.insert("stack".to_owned(), Some(stack.to_owned()));
            let resources = Resources {
                cpu: 16_384,
                memory: 65_536,
                tcp_ports: vec![22, 2375, 2376, 51678, 51679],
                udp_ports: Vec::new(),
                gpu_ids: Vec::new(),
            };
            ContainerInstance {
                container_instance_arn: format!(
                    "arn:aws:ecs:us-east-1:123456789012:container-instance/bench/{i:08x}"
                ),
                ec2_instance_id: Some(format!("i-{i:017x}")),
                status: ContainerInstanceStatus::Active,
                agent_connected: true,
                agent_version: Some("1.80.0".to_owned()),
                registered_at: 1_700_000_000 + i as i64,
                registered: resources.clone(),
                remaining: resources,
                attributes,
                running_tasks_count: 0,
                tasks: Vec::new(),
            }
        })
        .collect();
    Snapshot {
        container_instances,
    }
}

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    /// Tasks per request: 10 is RunTask's maximum per call.
    batch: u32,
    strategies: fn() -> Vec<PlacementStrategy>,
}

fn goal_chain() -> Vec<PlacementStrategy> {
    vec![
        PlacementStrategy::Spread(SpreadField::Attribute("ecs.availability-zone".to_owned())),
        PlacementStrategy::Binpack(BinpackField::Memory),
    ]
}

fn request(scenario: Scenario, n: u32) -> PlacementRequest {
    let mut request = PlacementRequest::new(
        "bench",
        TaskRequirements {
            cpu: 64,
            memory: 256,
            host_ports: Vec::new(),
            gpu: 0,
        },
        scenario.batch,
        u64::from(n),
    );
    request.group = "service:bench".to_owned();
    request.constraints = vec![PlacementConstraint::MemberOf(
        "attribute:stack == prod".to_owned(),
    )];
    request.strategies = (scenario.strategies)();
    request
}

struct Run {
    rate: f64,
    per_request: Vec<Duration>,
    setup: Duration,
}

fn run(scenario: Scenario, snapshot: &Snapshot) -> Run {
    let started = Instant::now();
    let mut scheduler = Scheduler::new(snapshot.clone(), 1);
    let setup = started.elapsed();
    let requests = TASKS / scenario.batch;
    let mut per_request = Vec::with_capacity(requests as usize);
    let mut placed = 0usize;
    let started = Instant::now();
    for n in 0..requests {
        let request = request(scenario, n);
        let t = Instant::now();
        let plan = scheduler.place(&request).expect("valid request");
        per_request.push(t.elapsed());
        placed += plan.placements.len();
        black_box(&plan);
    }
    let elapsed = started.elapsed();
    assert_eq!(
        placed, TASKS as usize,
        "the cluster is sized to fit every task"
    );
    per_request.sort_unstable();
    Run {
        rate: placed as f64 / elapsed.as_secs_f64(),
        per_request,
        setup,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let scenarios = [
        Scenario {
            name: "runtask-10 spread(az)+binpack(memory)+memberOf",
            batch: 10,
            strategies: goal_chain,
        },
        Scenario {
            name: "service-1000 spread(az)+binpack(memory)+memberOf",
            batch: 1000,
            strategies: goal_chain,
        },
        Scenario {
            name: "runtask-10 service default spread(az)+spread(instanceId)+memberOf",
            batch: 10,
            strategies: PlacementStrategy::service_default,
        },
        Scenario {
            name: "runtask-10 random+memberOf",
            batch: 10,
            strategies: PlacementStrategy::run_task_default,
        },
    ];
    let sizes = [1_000usize, 10_000];
    let snapshots: Vec<Snapshot> = sizes.iter().map(|&n| snapshot(n)).collect();
    println!("scheduler placement bench: {TASKS} tasks per run, {REPETITIONS} interleaved repetitions, medians");
    for scenario in scenarios {
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
        let mut last: Vec<Option<Run>> = (0..sizes.len()).map(|_| None).collect();
        // Interleave sizes (A B A B …) so drift on a noisy machine hits both alike.
        for _ in 0..REPETITIONS {
            for (s, snapshot) in snapshots.iter().enumerate() {
                let result = run(scenario, snapshot);
                rates[s].push(result.rate);
                last[s] = Some(result);
            }
        }
        println!("\n{}", scenario.name);
        let mut medians = Vec::new();
        for (s, &size) in sizes.iter().enumerate() {
            let m = median(rates[s].clone());
            medians.push(m);
            let run = last[s].as_ref().expect("ran");
            let raw: Vec<String> = rates[s].iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "  {size:>6} instances: placements/s: {m:.0} (runs {}), per request p50 {:?} p99 {:?}, scheduler setup {:?}",
                raw.join(" "),
                percentile(&run.per_request, 0.5),
                percentile(&run.per_request, 0.99),
                run.setup,
            );
        }
        println!(
            "  ratio 10,000 ÷ 1,000 instances: {:.2}",
            medians[1] / medians[0]
        );
    }
    // The pure-function form rebuilds the scheduler per call: what wiring it per request costs.
    println!("\nscheduler::plan (a fresh scheduler per RunTask call of 10 tasks)");
    for (s, &size) in sizes.iter().enumerate() {
        let calls = 20;
        let started = Instant::now();
        for n in 0..calls {
            black_box(scheduler::plan(&snapshots[s], &request(scenarios[0], n)).expect("valid"));
        }
        let per_call = started.elapsed() / calls;
        println!(
            "  {size:>6} instances: {per_call:?} per call, placements/s: {:.0}",
            10.0 / per_call.as_secs_f64()
        );
    }
}
