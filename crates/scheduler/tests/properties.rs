//! Property tests of the scheduler's invariants over generated clusters and requests:
//! - no container instance is ever over-committed (cpu, memory, ports, GPUs), across requests;
//! - every placement satisfies every constraint, evaluated independently as tasks land;
//! - every task is placed or reported, unplaced tasks are the tail, and each rejection is true;
//! - the same seed gives the same plan;
//! - the index picks exactly what the literal scan of the strategy chain picks.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use scheduler::query::Expression;
use scheduler::{
    BinpackField, ContainerInstance, ContainerInstanceStatus, HostPort, PlacementConstraint,
    PlacementRequest, PlacementStrategy, Plan, Protocol, RejectionReason, Resources, Scheduler,
    Snapshot, SpreadField, TaskOnInstance, TaskRequirements,
};

const GROUPS: [&str; 3] = ["service:web", "service:db", "family:batch"];
const EXPRESSIONS: [&str; 8] = [
    "attribute:stack == prod",
    "attribute:stack != prod",
    "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
    "attribute:ecs.instance-type =~ t2.*",
    "not(task:group == service:db)",
    "runningTasksCount < 3",
    "attribute:cores >= 8 or attribute:stack !exists",
    "task:group exists and attribute:stack exists",
];

fn instance_strategy() -> impl Strategy<Value = ContainerInstance> {
    (
        (0u32..2048, 0u32..4096, 0usize..4, 0usize..3, 0usize..3),
        (
            proptest::sample::subsequence(vec![80u16, 443, 8080], 0..=2),
            proptest::bool::weighted(0.2),
            0usize..3,
            proptest::bool::weighted(0.9),
            proptest::bool::weighted(0.9),
            proptest::collection::vec(0usize..3, 0..4),
            prop_oneof![Just(4u32), Just(8), Just(16)],
        ),
    )
        .prop_map(
            |(
                (cpu, memory, zone, stack, kind),
                (ports, udp, gpus, active, agent, tasks, cores),
            )| {
                let mut attributes = BTreeMap::new();
                if zone < 3 {
                    attributes.insert(
                        "ecs.availability-zone".to_owned(),
                        Some(["us-east-1a", "us-east-1b", "us-east-1c"][zone].to_owned()),
                    );
                }
                if stack < 2 {
                    attributes.insert("stack".to_owned(), Some(["prod", "dev"][stack].to_owned()));
                }
                attributes.insert(
                    "ecs.instance-type".to_owned(),
                    Some(["t2.micro", "m5.large", "t2.large"][kind].to_owned()),
                );
                attributes.insert("cores".to_owned(), Some(cores.to_string()));
                let tasks: Vec<TaskOnInstance> = tasks
                    .into_iter()
                    .map(|g| TaskOnInstance {
                        group: GROUPS[g].to_owned(),
                        family: "f".to_owned(),
                    })
                    .collect();
                let remaining = Resources {
                    cpu,
                    memory,
                    tcp_ports: ports,
                    udp_ports: if udp { vec![53] } else { vec![] },
                    gpu_ids: (0..gpus).map(|g| format!("gpu-{g}")).collect(),
                };
                ContainerInstance {
                    container_instance_arn: String::new(),
                    ec2_instance_id: None,
                    status: if active {
                        ContainerInstanceStatus::Active
                    } else {
                        ContainerInstanceStatus::Draining
                    },
                    agent_connected: agent,
                    agent_version: None,
                    registered_at: 0,
                    registered: remaining.clone(),
                    remaining,
                    attributes,
                    running_tasks_count: tasks.len() as u32,
                    tasks,
                }
            },
        )
}

fn snapshot_strategy() -> impl Strategy<Value = Snapshot> {
    proptest::collection::vec(instance_strategy(), 0..14).prop_map(|mut instances| {
        for (i, instance) in instances.iter_mut().enumerate() {
            instance.container_instance_arn =
                format!("arn:aws:ecs:us-east-1:123456789012:container-instance/default/ci-{i}");
        }
        Snapshot {
            container_instances: instances,
        }
    })
}

fn strategy_strategy() -> impl Strategy<Value = PlacementStrategy> {
    prop_oneof![
        Just(PlacementStrategy::Random),
        Just(PlacementStrategy::Binpack(BinpackField::Cpu)),
        Just(PlacementStrategy::Binpack(BinpackField::Memory)),
        Just(PlacementStrategy::Spread(SpreadField::InstanceId)),
        Just(PlacementStrategy::Spread(SpreadField::Attribute(
            "ecs.availability-zone".to_owned()
        ))),
        Just(PlacementStrategy::Spread(SpreadField::Attribute(
            "stack".to_owned()
        ))),
    ]
}

fn request_strategy() -> impl Strategy<Value = PlacementRequest> {
    (
        (0u32..16, 0u32..700, 0u32..1600, 0usize..3, any::<u64>()),
        (
            proptest::sample::subsequence(vec![80u16, 443, 9000], 0..=2),
            proptest::bool::weighted(0.2),
            prop_oneof![Just(0u32), Just(0), Just(1), Just(2)],
            proptest::bool::weighted(0.3),
            proptest::collection::vec(0usize..EXPRESSIONS.len(), 0..3),
            proptest::collection::vec(strategy_strategy(), 0..=5),
        ),
    )
        .prop_map(
            |(
                (count, cpu, memory, group, seed),
                (ports, udp, gpu, distinct, exprs, strategies),
            )| {
                let mut host_ports: Vec<HostPort> = ports.into_iter().map(HostPort::tcp).collect();
                if udp {
                    host_ports.push(HostPort::udp(53));
                }
                let mut constraints: Vec<PlacementConstraint> = exprs
                    .into_iter()
                    .map(|e| PlacementConstraint::MemberOf(EXPRESSIONS[e].to_owned()))
                    .collect();
                if distinct {
                    constraints.push(PlacementConstraint::DistinctInstance);
                }
                let mut request = PlacementRequest::new(
                    "f",
                    TaskRequirements {
                        cpu,
                        memory,
                        host_ports,
                        gpu,
                    },
                    count,
                    seed,
                );
                request.group = GROUPS[group].to_owned();
                request.constraints = constraints;
                request.strategies = strategies;
                request
            },
        )
}

/// An independent model of what the plan does to the cluster: tasks and resources as they land.
struct Model {
    instances: Vec<ContainerInstance>,
}

impl Model {
    fn ports(&self, i: usize, protocol: Protocol) -> &Vec<u16> {
        match protocol {
            Protocol::Tcp => &self.instances[i].remaining.tcp_ports,
            Protocol::Udp => &self.instances[i].remaining.udp_ports,
        }
    }

    /// Checks one placement against everything the request demands, then applies it.
    fn apply(&mut self, request: &PlacementRequest, plan: &Plan, n: usize) -> Result<(), String> {
        let placement = &plan.placements[n];
        let i = placement.container_instance;
        let needs = &request.requirements;
        let ci = &self.instances[i];
        if ci.status != ContainerInstanceStatus::Active || !ci.agent_connected {
            return Err(format!("task {n} on inactive or disconnected ci-{i}"));
        }
        if ci.remaining.cpu < needs.cpu || ci.remaining.memory < needs.memory {
            return Err(format!("task {n} over-commits ci-{i}"));
        }
        for port in &needs.host_ports {
            if self.ports(i, port.protocol).contains(&port.port) {
                return Err(format!("task {n} reuses port {port:?} on ci-{i}"));
            }
        }
        let gpus: BTreeSet<&String> = placement.gpu_ids.iter().collect();
        if placement.gpu_ids.len() != needs.gpu as usize
            || gpus.len() != placement.gpu_ids.len()
            || !placement
                .gpu_ids
                .iter()
                .all(|g| ci.remaining.gpu_ids.contains(g))
        {
            return Err(format!(
                "task {n} got GPUs {:?} on ci-{i}",
                placement.gpu_ids
            ));
        }
        for constraint in request.all_constraints() {
            let holds = match constraint {
                PlacementConstraint::DistinctInstance => {
                    !ci.tasks.iter().any(|t| t.group == request.group)
                }
                PlacementConstraint::MemberOf(e) => Expression::parse(e).unwrap().matches(ci),
            };
            if !holds {
                return Err(format!("task {n} on ci-{i} breaks {constraint:?}"));
            }
        }
        let ci = &mut self.instances[i];
        ci.remaining.cpu -= needs.cpu;
        ci.remaining.memory -= needs.memory;
        for port in &needs.host_ports {
            match port.protocol {
                Protocol::Tcp => ci.remaining.tcp_ports.push(port.port),
                Protocol::Udp => ci.remaining.udp_ports.push(port.port),
            }
        }
        ci.remaining
            .gpu_ids
            .retain(|g| !placement.gpu_ids.contains(g));
        ci.running_tasks_count += 1;
        ci.tasks.push(TaskOnInstance {
            group: request.group.clone(),
            family: request.family.clone(),
        });
        Ok(())
    }

    /// Whether a rejection's reason is true of the cluster after the plan.
    fn justified(&self, request: &PlacementRequest, i: usize, reason: RejectionReason) -> bool {
        let ci = &self.instances[i];
        let needs = &request.requirements;
        let mut seen = BTreeSet::new();
        let duplicate = needs.host_ports.iter().any(|p| !seen.insert(*p));
        match reason {
            RejectionReason::Agent => !ci.agent_connected,
            RejectionReason::Cpu => ci.remaining.cpu < needs.cpu,
            RejectionReason::Memory => ci.remaining.memory < needs.memory,
            RejectionReason::Ports => {
                duplicate
                    || needs
                        .host_ports
                        .iter()
                        .any(|p| self.ports(i, p.protocol).contains(&p.port))
            }
            RejectionReason::Gpu => (ci.remaining.gpu_ids.len() as u32) < needs.gpu,
            RejectionReason::MemberOf => request.all_constraints().any(|c| match c {
                PlacementConstraint::MemberOf(e) => !Expression::parse(e).unwrap().matches(ci),
                PlacementConstraint::DistinctInstance => false,
            }),
            RejectionReason::DistinctInstance => ci.tasks.iter().any(|t| t.group == request.group),
        }
    }
}

/// Runs the requests in order on one scheduler and checks every invariant.
fn check_invariants(snapshot: &Snapshot, requests: &[PlacementRequest]) -> Result<(), String> {
    let mut scheduler = Scheduler::new(snapshot.clone(), 42);
    let mut model = Model {
        instances: snapshot.container_instances.clone(),
    };
    for request in requests {
        let plan = scheduler.place(request).map_err(|e| e.to_string())?;
        for (n, placement) in plan.placements.iter().enumerate() {
            if placement.task as usize != n {
                return Err(format!("placement {n} is task {}", placement.task));
            }
            model.apply(request, &plan, n)?;
        }
        let placed = plan.placements.len() as u32;
        match &plan.unplaced {
            None if placed != request.count => return Err("tasks missing".to_owned()),
            None => {}
            Some(unplaced) => {
                if unplaced.tasks != (placed..request.count) || unplaced.tasks.is_empty() {
                    return Err(format!("unplaced {:?} after {placed}", unplaced.tasks));
                }
                let active: Vec<usize> = (0..snapshot.container_instances.len())
                    .filter(|&i| {
                        snapshot.container_instances[i].status == ContainerInstanceStatus::Active
                    })
                    .collect();
                let rejected: Vec<usize> = unplaced
                    .rejections
                    .iter()
                    .map(|r| r.container_instance)
                    .collect();
                if rejected != active {
                    return Err(format!("rejections cover {rejected:?}, active {active:?}"));
                }
                for r in &unplaced.rejections {
                    if !model.justified(request, r.container_instance, r.reason) {
                        return Err(format!("unjustified {r:?}"));
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plans_never_over_commit_and_constraints_hold(
        snapshot in snapshot_strategy(),
        requests in proptest::collection::vec(request_strategy(), 1..4),
    ) {
        if let Err(problem) = check_invariants(&snapshot, &requests) {
            prop_assert!(false, "{}", problem);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_plan(
        snapshot in snapshot_strategy(),
        request in request_strategy(),
    ) {
        let first = scheduler::plan(&snapshot, &request).unwrap();
        let second = scheduler::plan(&snapshot, &request).unwrap();
        prop_assert_eq!(first, second);
    }

    #[test]
    fn the_index_picks_what_the_scan_picks(
        snapshot in snapshot_strategy(),
        requests in proptest::collection::vec(request_strategy(), 1..5),
        changes in 0usize..16,
    ) {
        // Random draws are consumed differently by the two paths; deterministic chains must agree.
        let requests: Vec<PlacementRequest> = requests
            .into_iter()
            .map(|mut r| {
                r.strategies.retain(|s| *s != PlacementStrategy::Random);
                if r.strategies.is_empty() {
                    r.strategies.push(PlacementStrategy::Spread(SpreadField::InstanceId));
                }
                r
            })
            .collect();
        let mut indexed = Scheduler::new(snapshot.clone(), 7);
        let mut scanned = Scheduler::new(snapshot, 7);
        for (n, request) in requests.iter().enumerate() {
            let a = indexed.place(request).unwrap();
            let b = scanned.place_by_scanning(request).unwrap();
            prop_assert_eq!(&a, &b, "strategies {:?}", request.strategies);
            // Between requests, change the cluster the two ways the control plane will: give a
            // plan back, or replace an instance (more memory, another zone, agent flapping).
            match (n + changes) % 3 {
                0 => {
                    indexed.release(&a);
                    scanned.release(&b);
                }
                1 if !indexed.container_instances().is_empty() => {
                    let i = changes % indexed.container_instances().len();
                    let mut changed = indexed.container_instances()[i].clone();
                    changed.remaining.memory += 1024;
                    changed.agent_connected = !changed.agent_connected || changes % 2 == 0;
                    changed.attributes.insert(
                        "ecs.availability-zone".to_owned(),
                        Some("us-east-1c".to_owned()),
                    );
                    indexed.upsert_container_instance(changed.clone());
                    scanned.upsert_container_instance(changed);
                }
                _ => {}
            }
        }
    }
}

#[test]
fn release_gives_everything_back() {
    let snapshot = Snapshot {
        container_instances: vec![ContainerInstance {
            container_instance_arn: "arn:aws:ecs:us-east-1:1:container-instance/default/a"
                .to_owned(),
            ec2_instance_id: None,
            status: ContainerInstanceStatus::Active,
            agent_connected: true,
            agent_version: None,
            registered_at: 0,
            registered: Resources::default(),
            remaining: Resources {
                cpu: 1024,
                memory: 1024,
                gpu_ids: vec!["g0".to_owned()],
                ..Resources::default()
            },
            attributes: BTreeMap::new(),
            running_tasks_count: 0,
            tasks: Vec::new(),
        }],
    };
    let mut request = PlacementRequest::new(
        "f",
        TaskRequirements {
            cpu: 1024,
            memory: 1024,
            host_ports: vec![HostPort::tcp(80)],
            gpu: 1,
        },
        1,
        0,
    );
    request.constraints = vec![PlacementConstraint::DistinctInstance];
    let mut scheduler = Scheduler::new(snapshot, 0);
    let first = scheduler.place(&request).unwrap();
    assert!(first.is_complete());
    assert!(!scheduler.place(&request).unwrap().is_complete());
    scheduler.release(&first);
    let again = scheduler.place(&request).unwrap();
    assert_eq!(again.placements, first.placements);
}
