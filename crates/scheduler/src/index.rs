//! Selection without scanning the cluster: an index per (group, strategies, static constraints,
//! task size) that answers "which container instance does the strategy chain pick next" in about
//! O(log n) per task, kept up to date as any request places tasks.
//!
//! It serves the chains ECS users write: leading `spread` on attributes, then keys that change
//! only for the instance a task lands on (`binpack` on cpu/memory, `spread` on `instanceId`),
//! then optionally `random`. Other chains (an attribute spread after a binpack, say) go to the
//! linear scan in [`crate::scan`], which is also the reference the tests compare this against.
//!
//! Layout: each leading attribute spread is a *level*, partitioning candidates by the
//! attribute's value; the per-value task counts of the request's group are kept per level. A
//! *leaf* is one combination of values and holds its candidates ordered by the remaining keys
//! and a fixed pseudo-random tie-break. Selection walks levels in ascending count order, taking
//! all values tied on a count together (strategies are lexicographic), and returns the first
//! feasible instance of the leaves reached.
//!
//! Invariant: an instance found infeasible for a reason that placements cannot undo (resources,
//! ports, GPUs, distinctInstance: all monotone, see [`crate::cluster`]) is *parked*, removed from
//! its leaf. Whatever changes an instance otherwise (resources given back, new attributes) goes
//! through [`SelectionIndex::detach`] and [`SelectionIndex::attach`], which unpark it.

use std::collections::{BTreeSet, HashMap};

use crate::cluster::{Cluster, CompiledRequest, GroupId};
use crate::plan::RejectionReason;
use crate::random::SplitMix64;
use crate::request::{BinpackField, PlacementStrategy, SpreadField, TaskRequirements};

/// How many draws the `random` strategy makes before falling back to listing the feasible
/// instances; enough that a cluster where most candidates still fit never needs the list.
const RANDOM_DRAWS: usize = 64;
const NONE: u32 = u32::MAX;

/// What an index is valid for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct IndexKey {
    pub group: GroupId,
    pub strategies: Vec<PlacementStrategy>,
    pub static_key: Vec<String>,
    pub requirements: TaskRequirements,
    pub distinct_instance: bool,
    /// Set when instances refused by the dynamic expressions are parked, which is only right
    /// for requests with these same expressions.
    pub parked_dynamic: Option<Vec<String>>,
}

impl IndexKey {
    pub fn of(request: &CompiledRequest) -> Self {
        IndexKey {
            group: request.group,
            strategies: request.strategies.clone(),
            static_key: request.static_key.clone(),
            requirements: request.requirements.clone(),
            distinct_instance: request.distinct_instance,
            parked_dynamic: request.dynamic_falling.then(|| request.dynamic_key.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeafKey {
    Cpu,
    Memory,
    /// Tasks of the group on the instance (`spread` on `instanceId`).
    TasksOnInstance,
}

/// Up to three distinct leaf keys, unused slots zero.
type Key = [u32; 3];

#[derive(Debug, Clone)]
struct Level {
    attribute: String,
    /// Value → id; an absent (or value-less) attribute is one more value, keyed by [`ABSENT`].
    ids: HashMap<String, u32>,
    /// Per container instance (all of them, candidates or not), its value id.
    value_of: Vec<u32>,
    /// Per value id, tasks of the group on instances with that value.
    counts: Vec<u32>,
}

/// The key of "no value" in `Level::ids`; attribute values cannot contain NUL.
const ABSENT: &str = "\0";

#[derive(Debug, Clone)]
struct Leaf {
    /// Value id per level.
    path: Vec<u32>,
    ordered: BTreeSet<(Key, u64, u32)>,
    members: Vec<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct SelectionIndex {
    pub key: IndexKey,
    pub last_used: u64,
    levels: Vec<Level>,
    leaf_keys: Vec<LeafKey>,
    random_last: bool,
    leaves: Vec<Leaf>,
    leaf_by_path: HashMap<Vec<u32>, u32>,
    /// Per container instance: its leaf, or `NONE` if it is not a candidate.
    leaf_of: Vec<u32>,
    current: Vec<Key>,
    parked: Vec<bool>,
}

/// Whether a (normalised) strategy chain has the shape the index serves.
pub(crate) fn indexable(strategies: &[PlacementStrategy]) -> bool {
    let mut phase = 0; // 0: attribute spreads, 1: leaf keys, 2: after random
    for strategy in strategies {
        match strategy {
            PlacementStrategy::Spread(SpreadField::Attribute(_)) if phase == 0 => {}
            PlacementStrategy::Spread(SpreadField::Attribute(_)) => return false,
            PlacementStrategy::Binpack(_) | PlacementStrategy::Spread(SpreadField::InstanceId) => {
                if phase == 2 {
                    return false;
                }
                phase = 1;
            }
            PlacementStrategy::Random => phase = 2,
        }
    }
    true
}

impl SelectionIndex {
    /// Builds the index over the ACTIVE, connected container instances that satisfy the static
    /// constraints: one pass over the cluster.
    pub fn build(cluster: &Cluster, request: &CompiledRequest, now: u64) -> Self {
        let mut levels = Vec::new();
        let mut leaf_keys = Vec::new();
        let mut random_last = false;
        for strategy in &request.strategies {
            match strategy {
                PlacementStrategy::Spread(SpreadField::Attribute(name)) => levels.push(Level {
                    attribute: name.clone(),
                    ids: HashMap::new(),
                    value_of: Vec::with_capacity(cluster.len()),
                    counts: Vec::new(),
                }),
                PlacementStrategy::Spread(SpreadField::InstanceId) => {
                    leaf_keys.push(LeafKey::TasksOnInstance)
                }
                PlacementStrategy::Binpack(BinpackField::Cpu) => leaf_keys.push(LeafKey::Cpu),
                PlacementStrategy::Binpack(BinpackField::Memory) => leaf_keys.push(LeafKey::Memory),
                PlacementStrategy::Random => random_last = true,
            }
        }
        let mut index = SelectionIndex {
            key: IndexKey::of(request),
            last_used: now,
            levels,
            leaf_keys,
            random_last,
            leaves: Vec::new(),
            leaf_by_path: HashMap::new(),
            leaf_of: Vec::with_capacity(cluster.len()),
            current: Vec::with_capacity(cluster.len()),
            parked: Vec::with_capacity(cluster.len()),
        };
        for i in 0..cluster.len() {
            let static_ok = request.static_filter.as_ref().is_none_or(|f| f[i]);
            index.attach(cluster, i, static_ok);
        }
        index
    }

    /// Adds instance `i` (new, or re-added after [`SelectionIndex::detach`]) as the cluster
    /// now describes it. `static_ok`: it satisfies the index's static constraints.
    pub fn attach(&mut self, cluster: &Cluster, i: usize, static_ok: bool) {
        if i == self.leaf_of.len() {
            self.leaf_of.push(NONE);
            self.current.push([0; 3]);
            self.parked.push(false);
            for level in &mut self.levels {
                level.value_of.push(0);
            }
        }
        let tasks = cluster.state[i].group_count(self.key.group);
        let mut path = Vec::with_capacity(self.levels.len());
        for level in &mut self.levels {
            let value = cluster.instances[i]
                .attribute(&level.attribute)
                .flatten()
                .unwrap_or(ABSENT);
            let id = match level.ids.get(value) {
                Some(id) => *id,
                None => {
                    let id = level.counts.len() as u32;
                    level.counts.push(0);
                    level.ids.insert(value.to_owned(), id);
                    id
                }
            };
            level.value_of[i] = id;
            level.counts[id as usize] += tasks;
            path.push(id);
        }
        self.parked[i] = false;
        let candidate = cluster.is_active(i) && cluster.instances[i].agent_connected && static_ok;
        if !candidate {
            self.leaf_of[i] = NONE;
            return;
        }
        let leaf = match self.leaf_by_path.get(&path) {
            Some(leaf) => *leaf,
            None => {
                let leaf = self.leaves.len() as u32;
                self.leaves.push(Leaf {
                    path: path.clone(),
                    ordered: BTreeSet::new(),
                    members: Vec::new(),
                });
                self.leaf_by_path.insert(path, leaf);
                leaf
            }
        };
        let key = self.key_of(cluster, i);
        self.leaf_of[i] = leaf;
        self.current[i] = key;
        let leaf = &mut self.leaves[leaf as usize];
        leaf.ordered.insert((key, cluster.tiebreak[i], i as u32));
        leaf.members.push(i as u32);
    }

    /// Removes instance `i` as the cluster *still* describes it, before the cluster changes it
    /// in a way placements do not (resources given back, attributes, status).
    pub fn detach(&mut self, cluster: &Cluster, i: usize) {
        let tasks = cluster.state[i].group_count(self.key.group);
        for level in &mut self.levels {
            let count = &mut level.counts[level.value_of[i] as usize];
            *count = count.saturating_sub(tasks);
        }
        let leaf = self.leaf_of[i];
        if leaf == NONE {
            return;
        }
        let leaf = &mut self.leaves[leaf as usize];
        if !self.parked[i] {
            leaf.ordered
                .remove(&(self.current[i], cluster.tiebreak[i], i as u32));
        }
        leaf.members.retain(|&m| m as usize != i);
        self.leaf_of[i] = NONE;
        self.parked[i] = false;
    }

    fn key_of(&self, cluster: &Cluster, i: usize) -> Key {
        let state = &cluster.state[i];
        let mut key = [0; 3];
        for (slot, leaf_key) in key.iter_mut().zip(&self.leaf_keys) {
            *slot = match leaf_key {
                LeafKey::Cpu => state.cpu,
                LeafKey::Memory => state.memory,
                LeafKey::TasksOnInstance => state.group_count(self.key.group),
            };
        }
        key
    }

    /// Keeps the index true after a task of `group` (from any request) landed on instance `i`.
    pub fn on_placed(&mut self, cluster: &Cluster, i: usize, group: GroupId) {
        if group == self.key.group {
            for level in &mut self.levels {
                level.counts[level.value_of[i] as usize] += 1;
            }
        }
        let leaf = self.leaf_of[i];
        if leaf == NONE || self.parked[i] {
            return;
        }
        let key = self.key_of(cluster, i);
        if key != self.current[i] {
            let ordered = &mut self.leaves[leaf as usize].ordered;
            let tiebreak = cluster.tiebreak[i];
            ordered.remove(&(self.current[i], tiebreak, i as u32));
            ordered.insert((key, tiebreak, i as u32));
            self.current[i] = key;
        }
    }

    fn park(&mut self, cluster: &Cluster, i: usize) {
        if !self.parked[i] {
            self.parked[i] = true;
            let leaf = self.leaf_of[i] as usize;
            self.leaves[leaf]
                .ordered
                .remove(&(self.current[i], cluster.tiebreak[i], i as u32));
        }
    }

    /// The container instance the strategy chain picks for the next task, if any fits.
    pub fn select(
        &mut self,
        cluster: &Cluster,
        request: &CompiledRequest,
        rng: &mut SplitMix64,
    ) -> Option<usize> {
        let all: Vec<u32> = (0..self.leaves.len() as u32).collect();
        self.select_level(0, &all, cluster, request, rng)
    }

    fn select_level(
        &mut self,
        level: usize,
        leaves: &[u32],
        cluster: &Cluster,
        request: &CompiledRequest,
        rng: &mut SplitMix64,
    ) -> Option<usize> {
        if level == self.levels.len() {
            return self.select_in_leaves(leaves, cluster, request, rng);
        }
        let mut by_count: Vec<(u32, u32)> = leaves
            .iter()
            .map(|&leaf| {
                let value = self.leaves[leaf as usize].path[level];
                (self.levels[level].counts[value as usize], leaf)
            })
            .collect();
        by_count.sort_unstable();
        let mut start = 0;
        while start < by_count.len() {
            let count = by_count[start].0;
            let end = start
                + by_count[start..]
                    .iter()
                    .take_while(|(c, _)| *c == count)
                    .count();
            let tied: Vec<u32> = by_count[start..end].iter().map(|(_, leaf)| *leaf).collect();
            if let Some(found) = self.select_level(level + 1, &tied, cluster, request, rng) {
                return Some(found);
            }
            start = end;
        }
        None
    }

    /// Whether a failed check can never pass again while this index lives. Candidates already
    /// passed the agent and static checks, so `MemberOf` here comes from dynamic expressions.
    fn monotone(&self, reason: RejectionReason) -> bool {
        match reason {
            RejectionReason::Agent => false,
            RejectionReason::MemberOf => self.key.parked_dynamic.is_some(),
            _ => true,
        }
    }

    fn select_in_leaves(
        &mut self,
        leaves: &[u32],
        cluster: &Cluster,
        request: &CompiledRequest,
        rng: &mut SplitMix64,
    ) -> Option<usize> {
        if self.leaf_keys.is_empty() && self.random_last {
            return self.sample(leaves, cluster, request, rng);
        }
        // Where feasible entries can start: a binpack key below the task's need cannot fit.
        let floor: Key = match self.leaf_keys.first() {
            Some(LeafKey::Cpu) => [request.requirements.cpu, 0, 0],
            Some(LeafKey::Memory) => [request.requirements.memory, 0, 0],
            _ => [0; 3],
        };
        let mut best: Option<(Key, u64, u32)> = None;
        let mut to_park = Vec::new();
        for &leaf in leaves {
            for &(key, tiebreak, i) in self.leaves[leaf as usize].ordered.range((floor, 0, 0)..) {
                if best.is_some_and(|b| (key, tiebreak, i) >= b) {
                    break;
                }
                match cluster.check(i as usize, request) {
                    Ok(()) => {
                        best = Some((key, tiebreak, i));
                        break;
                    }
                    Err(reason) if self.monotone(reason) => to_park.push(i as usize),
                    Err(_) => {}
                }
            }
        }
        for i in to_park {
            self.park(cluster, i);
        }
        let (best_key, _, best_i) = best?;
        if !self.random_last {
            return Some(best_i as usize);
        }
        // `random` after the keys: uniformly among the feasible instances tied on every key.
        let mut tied = Vec::new();
        for &leaf in leaves {
            let range = self.leaves[leaf as usize]
                .ordered
                .range((best_key, 0, 0)..=(best_key, u64::MAX, u32::MAX));
            for &(_, _, i) in range {
                if cluster.check(i as usize, request).is_ok() {
                    tied.push(i as usize);
                }
            }
        }
        tied.sort_unstable();
        Some(tied[rng.below(tied.len() as u64) as usize])
    }

    /// `random` with no keys before it: rejection sampling over the leaves' members is uniform
    /// over the feasible ones; if most draws miss, list the feasible ones instead.
    fn sample(
        &mut self,
        leaves: &[u32],
        cluster: &Cluster,
        request: &CompiledRequest,
        rng: &mut SplitMix64,
    ) -> Option<usize> {
        let total: usize = leaves
            .iter()
            .map(|&l| self.leaves[l as usize].members.len())
            .sum();
        if total == 0 {
            return None;
        }
        for _ in 0..RANDOM_DRAWS {
            let mut draw = rng.below(total as u64) as usize;
            let mut chosen = None;
            for &leaf in leaves {
                let members = &self.leaves[leaf as usize].members;
                if draw < members.len() {
                    chosen = Some(members[draw] as usize);
                    break;
                }
                draw -= members.len();
            }
            let i = chosen?;
            if self.parked[i] {
                continue;
            }
            match cluster.check(i, request) {
                Ok(()) => return Some(i),
                Err(reason) if self.monotone(reason) => self.park(cluster, i),
                Err(_) => {}
            }
        }
        let mut feasible = Vec::new();
        let mut to_park = Vec::new();
        for &leaf in leaves {
            for &i in &self.leaves[leaf as usize].members {
                let i = i as usize;
                if self.parked[i] {
                    continue;
                }
                match cluster.check(i, request) {
                    Ok(()) => feasible.push(i),
                    Err(reason) if self.monotone(reason) => to_park.push(i),
                    Err(_) => {}
                }
            }
        }
        for i in to_park {
            self.park(cluster, i);
        }
        if feasible.is_empty() {
            return None;
        }
        Some(feasible[rng.below(feasible.len() as u64) as usize])
    }
}
