//! # foldswap-ladder — the sampling hash and the scan ladder
//!
//! UKSM's two ideas, rebuilt as a `no_std`, `core`-only crate that any host drives.
//!
//! ## The sampling hash ([`SampledHasher`])
//!
//! Finding duplicate pages means hashing pages, and most pages are unique: hashing
//! all 4096 bytes of each is mostly wasted. The sampled hash reads only `strength`
//! of the page's 1024 `u32` words, at positions given by a random permutation drawn
//! from a seed, and mixes them with an invertible step. Two consequences:
//!
//! - a stored hash moves to another strength by mixing in, or un-mixing, only the
//!   words between the two strengths ([`SampledHasher::rehash`], UKSM's delta hash);
//! - the all-zero page hashes alike under every permutation, so its hash at every
//!   strength is a compile-time table ([`zero_page_hash`]).
//!
//! A sampled-hash match is only a candidate: the merge trees then compare the
//! full-page hash ([`full_hash`], xxh3-64) and finally every byte.
//!
//! ## The strength adapter ([`StrengthAdapter`])
//!
//! Low strength is cheap per page but lets different pages collide; every collision
//! costs a full hash (and sometimes a byte comparison). The adapter weighs the time
//! sampling saved against the time collisions cost, in picoseconds from measured
//! weights ([`CostWeights`]), and raises, lowers or probes the strength with a small
//! documented state machine (see the `strength` module). Integer arithmetic only.
//!
//! ## The ladder ([`Ladder`])
//!
//! Regions (VMAs in the kernel, mappings or image ranges in userspace) sit on rungs.
//! Each rung has a CPU share (`cpu_ratio`) and a cover time (`cover_msecs`): its
//! regions are swept, with a stride and a random start, once per cover time on that
//! share. After each round a region whose dedup ratio — (changed − broken) / (scanned
//! − empty), changed counting the pages its scans merged (or, on the swap face, patched
//! or recompressed), empty the slots that held nothing to scan — reaches `promote_ratio` climbs a rung, others fall one, and a region
//! whose merges keep being broken by writes (`thrash_ratio`) counts as barren. So scan CPU goes
//! where duplicates are. The governors of UKSM are the presets ([`Governor`]).
//!
//! The core never reads a clock and never allocates except region slots from the
//! host's [`foldswap_mem::PageProvider`]: time and cost come in from the host
//! ([`Ladder::next_batch`], [`Ladder::complete_batch`]), and tunables are staged and
//! applied only at a round boundary ([`Ladder::stage_tunables`], [`Ladder::end_round`]).
//! No floating point, no panics on caller input, no big stack frames (the hasher's
//! 2 KiB permutation can be built in place: [`SampledHasher::init_in_place`]).
//!
//! `docs/ladder.md` has the diagram and the measurements.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

mod hash;
mod ladder;
mod rng;
#[cfg(feature = "std")]
pub mod settle;
mod strength;
mod tunables;

pub use hash::{
    FULL_STRENGTH, HASH_INIT, MAX_STRENGTH, SampledHasher, WORD_POSITIONS, clamp_strength,
    full_hash, zero_page_hash,
};
pub use ladder::{
    Batch, BatchResult, Ladder, LadderStats, Next, RegionId, RegionRound, RoundSummary, RungStats,
};
pub use strength::{
    AdapterState, AdapterStats, AdapterTunables, CostWeights, HashWork, StrengthAdapter,
    StrengthChange,
};
pub use tunables::{Governor, MAX_COVER_MSECS, MAX_RUNGS, RATIO_ONE, RungTunables, Tunables};
