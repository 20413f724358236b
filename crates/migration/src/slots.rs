//! Sets of slots ([`SlotRanges`]) and the slot → group map ([`SlotMap`]).

use seshat_common::CLUSTER_SLOTS;

use crate::{GroupId, MAX_SLOTS_PER_MIGRATION, MAX_SLOT_RANGES};

/// Why a set of slots or a slot map was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// A slot at or above [`CLUSTER_SLOTS`].
    #[error("slot {0} is out of range (0..{CLUSTER_SLOTS})")]
    OutOfRange(u32),
    /// A range whose start is after its end.
    #[error("slot range {start}-{end} is reversed")]
    Reversed {
        /// First slot given.
        start: u16,
        /// Last slot given.
        end: u16,
    },
    /// No slot at all.
    #[error("a migration needs at least one slot")]
    Empty,
    /// More slots than [`MAX_SLOTS_PER_MIGRATION`].
    #[error("{0} slots, at most {MAX_SLOTS_PER_MIGRATION} per migration")]
    TooManySlots(usize),
    /// More ranges than [`MAX_SLOT_RANGES`] once merged.
    #[error("{0} slot ranges, at most {MAX_SLOT_RANGES}")]
    TooManyRanges(usize),
    /// A slot map whose length is not [`CLUSTER_SLOTS`].
    #[error("a slot map has {0} slots, not {CLUSTER_SLOTS}")]
    WrongLength(usize),
    /// A bootstrap split over no group.
    #[error("a slot map needs at least one group")]
    NoGroup,
}

/// An inclusive range of slots, `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotRange {
    /// First slot.
    pub start: u16,
    /// Last slot (inclusive).
    pub end: u16,
}

impl SlotRange {
    /// Number of slots in the range.
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// Never true: a range holds at least its start.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The non-empty set of slots one migration moves, kept as sorted,
/// disjoint, non-adjacent ranges (at most [`MAX_SLOT_RANGES`] ranges and
/// [`MAX_SLOTS_PER_MIGRATION`] slots), so two equal sets have one
/// representation and compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotRanges {
    ranges: Vec<SlotRange>,
}

impl SlotRanges {
    /// The set holding the inclusive ranges `(start, end)`, merged and
    /// sorted. Refuses slots ≥ [`CLUSTER_SLOTS`], reversed ranges, an empty
    /// set, more than [`MAX_SLOT_RANGES`] ranges after merging or more
    /// than [`MAX_SLOTS_PER_MIGRATION`] slots (the
    /// input is checked one range at a time, so a long input costs no more
    /// memory than the limit).
    pub fn new(ranges: impl IntoIterator<Item = (u16, u16)>) -> Result<Self, SlotError> {
        let mut out: Vec<SlotRange> = Vec::new();
        for (start, end) in ranges {
            if end >= CLUSTER_SLOTS {
                return Err(SlotError::OutOfRange(u32::from(end)));
            }
            if start > end {
                return Err(SlotError::Reversed { start, end });
            }
            out.push(SlotRange { start, end });
            if out.len() > MAX_SLOT_RANGES {
                out = merge(out);
                if out.len() > MAX_SLOT_RANGES {
                    return Err(SlotError::TooManyRanges(out.len()));
                }
            }
        }
        let out = merge(out);
        if out.is_empty() {
            return Err(SlotError::Empty);
        }
        if out.len() > MAX_SLOT_RANGES {
            return Err(SlotError::TooManyRanges(out.len()));
        }
        let set = Self { ranges: out };
        if set.slot_count() > MAX_SLOTS_PER_MIGRATION {
            return Err(SlotError::TooManySlots(set.slot_count()));
        }
        Ok(set)
    }

    /// The set of one slot.
    pub fn single(slot: u16) -> Result<Self, SlotError> {
        Self::new([(slot, slot)])
    }

    /// The merged ranges, in order.
    pub fn ranges(&self) -> &[SlotRange] {
        &self.ranges
    }

    /// Whether `slot` is in the set (binary search over the ranges).
    pub fn contains(&self, slot: u16) -> bool {
        self.ranges
            .binary_search_by(|r| {
                if r.end < slot {
                    std::cmp::Ordering::Less
                } else if r.start > slot {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    /// Every slot of the set, in order.
    pub fn slots(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|r| r.start..=r.end)
    }

    /// Number of slots in the set.
    pub fn slot_count(&self) -> usize {
        self.ranges.iter().map(SlotRange::len).sum()
    }
}

/// Sorts and merges overlapping or adjacent ranges.
fn merge(mut ranges: Vec<SlotRange>) -> Vec<SlotRange> {
    ranges.sort_unstable();
    let mut out: Vec<SlotRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if u32::from(r.start) <= u32::from(last.end) + 1 => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r),
        }
    }
    out
}

/// Which group serves each of the [`CLUSTER_SLOTS`] slots.
///
/// The system group's copy is the cluster's slot map (what routing and
/// `CLUSTER SLOTS` use). A data group keeps its own copy inside its
/// [`SlotTable`](crate::SlotTable): exact for its own slots, a hint for
/// the others (it learns only of the migrations it takes part in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    owner: Vec<GroupId>,
}

impl SlotMap {
    /// The bootstrap split: `groups` in order take contiguous, even ranges
    /// (the same split as the binary's bootstrap layout).
    pub fn even(groups: &[GroupId]) -> Result<Self, SlotError> {
        let count = u32::try_from(groups.len()).map_err(|_| SlotError::NoGroup)?;
        if count == 0 {
            return Err(SlotError::NoGroup);
        }
        let total = u64::from(CLUSTER_SLOTS);
        let mut owner = Vec::with_capacity(usize::from(CLUSTER_SLOTS));
        for (i, &group) in (0u64..).zip(groups) {
            // Group i takes slots i·total/count ..= (i+1)·total/count − 1.
            let first = i * total / u64::from(count);
            let next = (i + 1) * total / u64::from(count);
            owner.extend((first..next).map(|_| group));
        }
        Ok(Self { owner })
    }

    /// A map from one owner per slot; refuses a length other than
    /// [`CLUSTER_SLOTS`].
    pub fn from_owners(owner: Vec<GroupId>) -> Result<Self, SlotError> {
        if owner.len() != usize::from(CLUSTER_SLOTS) {
            return Err(SlotError::WrongLength(owner.len()));
        }
        Ok(Self { owner })
    }

    /// The group serving `slot`; `None` for a slot out of range.
    pub fn owner(&self, slot: u16) -> Option<GroupId> {
        self.owner.get(usize::from(slot)).copied()
    }

    /// Whether every slot of `slots` belongs to `group`.
    pub fn all_owned_by(&self, slots: &SlotRanges, group: GroupId) -> bool {
        slots.slots().all(|s| self.owner(s) == Some(group))
    }

    /// Whether no slot of `slots` belongs to `group`.
    pub fn none_owned_by(&self, slots: &SlotRanges, group: GroupId) -> bool {
        slots.slots().all(|s| self.owner(s) != Some(group))
    }

    /// Gives every slot of `slots` to `group`.
    pub(crate) fn assign(&mut self, slots: &SlotRanges, group: GroupId) {
        for s in slots.slots() {
            if let Some(o) = self.owner.get_mut(usize::from(s)) {
                *o = group;
            }
        }
    }

    /// The owners as runs `(first slot, last slot, group)`, in order.
    pub fn runs(&self) -> Vec<(u16, u16, GroupId)> {
        let mut out: Vec<(u16, u16, GroupId)> = Vec::new();
        for (slot, &g) in (0u16..).zip(&self.owner) {
            match out.last_mut() {
                Some((_, end, group)) if *group == g => *end = slot,
                _ => out.push((slot, slot, g)),
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_merged_sorted_and_checked() {
        let s = SlotRanges::new([(10, 12), (0, 0), (13, 20), (5, 6), (6, 6)]).unwrap();
        assert_eq!(
            s.ranges(),
            &[
                SlotRange { start: 0, end: 0 },
                SlotRange { start: 5, end: 6 },
                SlotRange { start: 10, end: 20 }
            ]
        );
        assert_eq!(s.slot_count(), 1 + 2 + 11);
        assert!(s.contains(0) && s.contains(6) && s.contains(15) && s.contains(20));
        assert!(!s.contains(1) && !s.contains(9) && !s.contains(21));
        assert_eq!(SlotRanges::new([]), Err(SlotError::Empty));
        assert_eq!(
            SlotRanges::new([(3, 2)]),
            Err(SlotError::Reversed { start: 3, end: 2 })
        );
        assert_eq!(
            SlotRanges::new([(0, CLUSTER_SLOTS)]),
            Err(SlotError::OutOfRange(u32::from(CLUSTER_SLOTS)))
        );
        let many = (0..=MAX_SLOT_RANGES as u16).map(|i| (i * 2, i * 2));
        assert!(matches!(
            SlotRanges::new(many),
            Err(SlotError::TooManyRanges(_))
        ));
        // Many adjacent ranges merge into one and are fine.
        let adjacent = (0..1000u16).map(|i| (i, i));
        assert_eq!(SlotRanges::new(adjacent).unwrap().ranges().len(), 1);
        let most = MAX_SLOTS_PER_MIGRATION as u16;
        assert!(SlotRanges::new([(0, most - 1)]).is_ok());
        assert_eq!(
            SlotRanges::new([(0, most)]),
            Err(SlotError::TooManySlots(usize::from(most) + 1))
        );
    }

    #[test]
    fn the_even_split_matches_the_bootstrap_layout() {
        let m = SlotMap::even(&[1, 2, 3]).unwrap();
        assert_eq!(
            m.runs(),
            vec![(0, 5460, 1), (5461, 10921, 2), (10922, 16383, 3)]
        );
        assert_eq!(SlotMap::even(&[]), Err(SlotError::NoGroup));
        assert_eq!(
            SlotMap::from_owners(vec![1; 3]),
            Err(SlotError::WrongLength(3))
        );
    }
}
