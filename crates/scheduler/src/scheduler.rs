//! The placement engine: a long-lived working copy of one cluster that plans requests one after
//! another, each seeing the tasks the previous ones placed.
//!
//! Meant to be held by the control plane's placement path: build it from a snapshot, `place` a
//! request (which reserves what it planned), commit the plan against the store revision it was
//! built from, and on a conflict `release` the plan and rebuild from a fresh snapshot (or
//! `upsert_container_instance` the instances that changed). Plans are never written anywhere by
//! the scheduler itself.
//!
//! Per request the work is proportional to the tasks placed, not to the cluster: expressions are
//! parsed once per text, static `memberOf` constraints are evaluated once per snapshot and set of
//! expressions, and the strategy chain is served by a [`SelectionIndex`] kept across requests.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cluster::{Cluster, CompiledRequest};
use crate::index::{indexable, IndexKey, SelectionIndex};
use crate::plan::{InstanceRejection, Placement, Plan, Unplaced};
use crate::query::{Expression, Trend};
use crate::random::SplitMix64;
use crate::request::{PlacementConstraint, PlacementRequest, PlacementStrategy, RequestError};
use crate::scan::Scan;
use crate::snapshot::{ContainerInstance, Snapshot};

/// Indices kept at once. Each costs a few words per container instance and a little work per
/// placement, so a handful of recently used (group, strategies, constraints, size) combinations
/// is the sweet spot; a service's or a RunTask caller's repeated requests share one.
const MAX_INDICES: usize = 8;
/// Parsed expressions kept (a bound, so a caller sending ever-new expressions cannot grow us).
const MAX_EXPRESSIONS: usize = 1024;
const MAX_STATIC_FILTERS: usize = 64;

/// The static `memberOf` expressions of some requests, evaluated on every container instance.
#[derive(Debug, Clone)]
struct StaticFilter {
    expressions: Vec<Arc<Expression>>,
    matches: Arc<Vec<bool>>,
}

/// Plans placements against a working copy of a cluster.
#[derive(Debug, Clone)]
pub struct Scheduler {
    cluster: Cluster,
    by_arn: HashMap<String, usize>,
    expressions: HashMap<String, Arc<Expression>>,
    static_filters: HashMap<Vec<String>, StaticFilter>,
    indices: Vec<SelectionIndex>,
    uses: u64,
}

impl Scheduler {
    /// A scheduler over the snapshot. `tiebreak_seed` orders container instances that every
    /// strategy ties on; the same seed gives the same order.
    pub fn new(snapshot: Snapshot, tiebreak_seed: u64) -> Self {
        let cluster = Cluster::new(snapshot.container_instances, tiebreak_seed);
        let by_arn = cluster
            .instances
            .iter()
            .enumerate()
            .map(|(i, ci)| (ci.container_instance_arn.clone(), i))
            .collect();
        Scheduler {
            cluster,
            by_arn,
            expressions: HashMap::new(),
            static_filters: HashMap::new(),
            indices: Vec::new(),
            uses: 0,
        }
    }

    /// The container instances, as the snapshot gave them (placements do not change these; they
    /// change the scheduler's private remaining resources). `Placement::container_instance` and
    /// `InstanceRejection::container_instance` index into this.
    pub fn container_instances(&self) -> &[ContainerInstance] {
        &self.cluster.instances
    }

    /// Adds a container instance or replaces the one with the same ARN (a new registration, a
    /// task that stopped, changed attributes or status). Its state is taken as given, so
    /// anything this scheduler reserved on it and that is now committed must be in `instance`,
    /// and plans on it not yet committed are forgotten (do not `release` them afterwards).
    /// Costs O(log instances) per cached index, not a rebuild.
    pub fn upsert_container_instance(&mut self, instance: ContainerInstance) -> usize {
        let existing = self.by_arn.get(&instance.container_instance_arn).copied();
        let i = match existing {
            Some(i) => {
                for index in &mut self.indices {
                    index.detach(&self.cluster, i);
                }
                self.cluster.replace(i, instance);
                i
            }
            None => {
                let arn = instance.container_instance_arn.clone();
                let i = self.cluster.push(instance);
                self.by_arn.insert(arn, i);
                i
            }
        };
        for filter in self.static_filters.values_mut() {
            let holds = filter
                .expressions
                .iter()
                .all(|e| e.matches(&self.cluster.instances[i]));
            let matches = Arc::make_mut(&mut filter.matches);
            if i == matches.len() {
                matches.push(holds);
            } else {
                matches[i] = holds;
            }
        }
        self.reattach(&[i]);
        i
    }

    /// Gives back what a plan reserved (its commit failed). Only for the latest plans on the
    /// instances concerned: a plan whose instances were upserted since is already forgotten.
    pub fn release(&mut self, plan: &Plan) {
        let group = self.cluster.groups.intern(&plan.group);
        let mut touched: Vec<usize> = plan
            .placements
            .iter()
            .map(|p| p.container_instance)
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for &i in &touched {
            for index in &mut self.indices {
                index.detach(&self.cluster, i);
            }
        }
        for placement in &plan.placements {
            self.cluster.unplace(
                placement.container_instance,
                &plan.requirements,
                group,
                &placement.gpu_ids,
            );
        }
        self.reattach(&touched);
    }

    /// Re-adds detached (or new) instances to every index; an index whose static filter was
    /// evicted cannot tell whether they belong and is dropped.
    fn reattach(&mut self, instances: &[usize]) {
        let Scheduler {
            cluster,
            static_filters,
            indices,
            ..
        } = self;
        indices.retain_mut(|index| {
            let filter = if index.key.static_key.is_empty() {
                None
            } else {
                match static_filters.get(&index.key.static_key) {
                    Some(filter) => Some(&filter.matches),
                    None => return false,
                }
            };
            for &i in instances {
                index.attach(cluster, i, filter.is_none_or(|f| f[i]));
            }
            true
        });
    }

    /// Plans `request.count` tasks and reserves them, so the next request sees them.
    pub fn place(&mut self, request: &PlacementRequest) -> Result<Plan, RequestError> {
        self.place_with(request, false)
    }

    /// [`Scheduler::place`] by scanning every instance per task instead of using an index: the
    /// reference the property tests compare the index with. Not for production use.
    #[doc(hidden)]
    pub fn place_by_scanning(&mut self, request: &PlacementRequest) -> Result<Plan, RequestError> {
        self.place_with(request, true)
    }

    fn place_with(
        &mut self,
        request: &PlacementRequest,
        scan_only: bool,
    ) -> Result<Plan, RequestError> {
        request.check_shape()?;
        let compiled = self.compile(request)?;
        let mut rng = SplitMix64::new(request.seed);
        let mut placements = Vec::with_capacity(request.count as usize);
        let mut unplaced = None;
        let indexed = !scan_only && indexable(&compiled.strategies);
        let index_slot = if indexed && request.count > 0 {
            Some(self.index_for(&compiled))
        } else {
            None
        };
        let mut scan = (!indexed && request.count > 0).then(|| Scan::new(&self.cluster, &compiled));
        for task in 0..request.count {
            let chosen = match (index_slot, &scan) {
                (Some(slot), _) => self.indices[slot].select(&self.cluster, &compiled, &mut rng),
                (None, Some(scan)) => scan.select(&self.cluster, &compiled, &mut rng),
                (None, None) => None,
            };
            let chosen = chosen.or_else(|| {
                // Nothing fits; the rejection pass below proves it. Should the selection ever
                // miss a feasible instance, place there rather than report a false failure.
                let missed = (0..self.cluster.len()).find(|&i| {
                    self.cluster.is_active(i) && self.cluster.check(i, &compiled).is_ok()
                });
                debug_assert!(
                    missed.is_none(),
                    "selection missed feasible instance {missed:?}"
                );
                missed
            });
            let Some(i) = chosen else {
                unplaced = Some(Unplaced {
                    tasks: task..request.count,
                    rejections: self.rejections(&compiled),
                });
                break;
            };
            let gpu_ids = self.cluster.place(i, &compiled);
            for index in &mut self.indices {
                index.on_placed(&self.cluster, i, compiled.group);
            }
            if let Some(scan) = &mut scan {
                scan.on_placed(&self.cluster, &compiled, i);
            }
            placements.push(Placement {
                task,
                container_instance: i,
                gpu_ids,
            });
        }
        Ok(Plan {
            placements,
            unplaced,
            requirements: request.requirements.clone(),
            group: request.group.clone(),
            family: request.family.clone(),
        })
    }

    /// Why every ACTIVE container instance refuses the request now.
    fn rejections(&self, request: &CompiledRequest) -> Vec<InstanceRejection> {
        (0..self.cluster.len())
            .filter(|&i| self.cluster.is_active(i))
            .filter_map(|i| {
                self.cluster
                    .check(i, request)
                    .err()
                    .map(|reason| InstanceRejection {
                        container_instance: i,
                        reason,
                    })
            })
            .collect()
    }

    fn compile(&mut self, request: &PlacementRequest) -> Result<CompiledRequest, RequestError> {
        let mut static_key = Vec::new();
        let mut static_expressions = Vec::new();
        let mut dynamic = Vec::new();
        let mut dynamic_key = Vec::new();
        let mut distinct_instance = false;
        for constraint in request.all_constraints() {
            match constraint {
                PlacementConstraint::DistinctInstance => distinct_instance = true,
                PlacementConstraint::MemberOf(text) => {
                    let expression = self.expression(text)?;
                    if expression.depends_on_tasks() {
                        dynamic_key.push(text.clone());
                        dynamic.push(expression);
                    } else {
                        static_key.push(text.clone());
                        static_expressions.push(expression);
                    }
                }
            }
        }
        let static_filter = if static_key.is_empty() {
            None
        } else {
            Some(self.static_filter(static_key.clone(), static_expressions))
        };
        let mut ports = request.requirements.host_ports.clone();
        ports.sort_unstable();
        let ports_conflict = ports.windows(2).any(|w| w[0] == w[1]);
        Ok(CompiledRequest {
            group: self.cluster.groups.intern(&request.group),
            requirements: request.requirements.clone(),
            ports_conflict,
            static_key,
            static_filter,
            dynamic_falling: dynamic
                .iter()
                .all(|e| matches!(e.as_tasks_are_added(), Trend::Falling | Trend::Constant)),
            dynamic,
            dynamic_key,
            distinct_instance,
            strategies: normalise(&request.strategies),
        })
    }

    fn expression(&mut self, text: &str) -> Result<Arc<Expression>, RequestError> {
        if let Some(expression) = self.expressions.get(text) {
            return Ok(expression.clone());
        }
        let expression = Arc::new(Expression::parse(text)?);
        if self.expressions.len() >= MAX_EXPRESSIONS {
            self.expressions.clear();
        }
        self.expressions.insert(text.to_owned(), expression.clone());
        Ok(expression)
    }

    fn static_filter(
        &mut self,
        key: Vec<String>,
        expressions: Vec<Arc<Expression>>,
    ) -> Arc<Vec<bool>> {
        if let Some(filter) = self.static_filters.get(&key) {
            return filter.matches.clone();
        }
        let matches: Arc<Vec<bool>> = Arc::new(
            self.cluster
                .instances
                .iter()
                .map(|ci| expressions.iter().all(|e| e.matches(ci)))
                .collect(),
        );
        if self.static_filters.len() >= MAX_STATIC_FILTERS {
            self.static_filters.clear();
        }
        self.static_filters.insert(
            key,
            StaticFilter {
                expressions,
                matches: matches.clone(),
            },
        );
        matches
    }

    /// The slot of the index for this request, built if needed (evicting the least recently
    /// used one).
    fn index_for(&mut self, request: &CompiledRequest) -> usize {
        self.uses += 1;
        let key = IndexKey::of(request);
        if let Some(slot) = self.indices.iter().position(|index| index.key == key) {
            self.indices[slot].last_used = self.uses;
            return slot;
        }
        let index = SelectionIndex::build(&self.cluster, request, self.uses);
        if self.indices.len() < MAX_INDICES {
            self.indices.push(index);
            return self.indices.len() - 1;
        }
        let slot = self
            .indices
            .iter()
            .enumerate()
            .min_by_key(|(_, index)| index.last_used)
            .map_or(0, |(slot, _)| slot);
        self.indices[slot] = index;
        slot
    }
}

/// Drops what cannot change the outcome: strategies after the first `random` (a random choice
/// leaves no ties) and repeats of an earlier strategy (they rank exactly as the first did).
/// No strategy at all means `random`.
fn normalise(strategies: &[PlacementStrategy]) -> Vec<PlacementStrategy> {
    let mut out: Vec<PlacementStrategy> = Vec::with_capacity(strategies.len());
    for strategy in strategies {
        if out.contains(strategy) {
            continue;
        }
        out.push(strategy.clone());
        if *strategy == PlacementStrategy::Random {
            break;
        }
    }
    if out.is_empty() {
        out.push(PlacementStrategy::Random);
    }
    out
}
