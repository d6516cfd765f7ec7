//! Dedup domains: which stored pages may be joined with which.
//!
//! Memory deduplication is a side channel: whoever can tell that a page of theirs
//! was merged learns that someone else holds the same bytes. So the host names a
//! [`Domain`] with every store (in the kernel: the page's memory cgroup), and under
//! the default [`DedupScope::Domain`] pages are joined — shared as one content,
//! patched against one another, compressed in one cold block — only within one
//! domain.
//!
//! # How a domain is kept apart
//!
//! A content's dedup index key ([`ContentKey`], 32 bits, kept in its entry) *is*
//! its domain in the low 16 bits and 16 bits of its hash, salted with a secret
//! per-domain value, in the high 16. So:
//!
//! - a lookup matches only keys of its own domain, compared exactly: no hash,
//!   however weak or constant, makes two domains' pages candidates of each other,
//!   and every candidate's bytes are compared in full as before;
//! - the bucket a key lands in depends on the secret salt, so where another
//!   domain's contents lie in the shared index, and so how long a lookup probes,
//!   does not follow from what those contents are;
//! - the domain of every stored content can be read from its entry, so deltas
//!   (the base must be of the entry's domain) and cold blocks (all members of one
//!   domain) are checked under the content lock, whatever the scanner chose.
//!
//! The similarity index's keys are salted the same way ([`DomainSalt::signature`]),
//! so a page's delta candidates come from its own domain; the check at re-encode
//! time stays the rule.
//!
//! # Rules
//!
//! - `Domain`: pages are joined only within the domain their store named.
//! - `Global`: every store is in domain 0; all pages may be joined (the behaviour
//!   before domains; for a single tenant).
//! - `Off`: no page is shared with or patched against another; cold blocks still
//!   join pages of one domain only.

use foldswap_delta::Signature;

/// Where the bytes each domain holds are charged: the host's accounting (the
/// kernel module charges them to the page's memory cgroup, as zswap does).
///
/// The backend reports, under its content lock, every change of the bytes a
/// domain's contents hold in the pool: an object's length when it is stored,
/// re-encoded or freed; a cold block's frame length when the block is formed and
/// when its last page leaves it. The new encoding is always charged before the
/// old one is uncharged, so a domain's charge never goes below zero, and it is 0
/// again once the domain holds nothing. Under [`DedupScope::Global`] every
/// content is domain 0's.
///
/// An implementation must not sleep, must not fail, and must not call back into
/// the backend (the content lock is held).
pub trait DomainCharges: Sync {
    /// `domain` now holds `bytes` more.
    fn charge(&self, domain: Domain, bytes: usize);
    /// `domain` now holds `bytes` less.
    fn uncharge(&self, domain: Domain, bytes: usize);
}

/// Who a stored page belongs to, for deduplication: a small integer the host gives
/// with every store (the kernel module: the page's memory cgroup id; 0 without
/// memory cgroups).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(pub u16);

/// Which stored pages may be joined (shared, patched, put in one cold block).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DedupScope {
    /// Only pages of one domain (the default).
    #[default]
    Domain,
    /// All pages, whatever domain their store named.
    Global,
    /// No page is shared or patched; cold blocks join one domain's pages.
    Off,
}

impl DedupScope {
    /// The scope a host names by number (the kernel module's parameter):
    /// 0 `domain`, 1 `global`, 2 `off`.
    pub fn from_index(index: u32) -> Option<Self> {
        match index {
            0 => Some(DedupScope::Domain),
            1 => Some(DedupScope::Global),
            2 => Some(DedupScope::Off),
            _ => None,
        }
    }

    /// The scope's name (`domain`, `global`, `off`).
    pub fn name(self) -> &'static str {
        match self {
            DedupScope::Domain => "domain",
            DedupScope::Global => "global",
            DedupScope::Off => "off",
        }
    }

    /// The domain a store naming `domain` is kept in.
    pub fn effective(self, domain: Domain) -> Domain {
        match self {
            DedupScope::Global => Domain(0),
            DedupScope::Domain | DedupScope::Off => domain,
        }
    }

    /// Whether stored pages are shared and patched at all.
    pub fn joins(self) -> bool {
        self != DedupScope::Off
    }
}

/// A secret that scatters each domain's keys (the host draws it at random: the
/// kernel module from `get_random_u64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainSalt(u64);

impl DomainSalt {
    /// The salt drawn as `secret`.
    pub const fn new(secret: u64) -> Self {
        DomainSalt(secret)
    }

    /// The salt of one domain: the secret and the domain mixed (splitmix64's
    /// finaliser, so neighbouring domains get unrelated salts).
    fn of(self, domain: Domain) -> u64 {
        let mut x = self.0 ^ u64::from(domain.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// The dedup index key of a page with content hash `hash` in `domain`.
    pub fn content_key(self, hash: u64, domain: Domain) -> ContentKey {
        let salted = self.salted_hash(hash, domain);
        ContentKey(((salted >> 48) as u32) << 16 | u32::from(domain.0))
    }

    /// Content hash `hash` salted for `domain`, all 64 bits (the content key keeps
    /// 16 of them; the table of recent refusals, [`crate::refused`], all).
    pub fn salted_hash(self, hash: u64, domain: Domain) -> u64 {
        (hash ^ self.of(domain)).wrapping_mul(0xff51_afd7_ed55_8ccd)
    }

    /// `signature` with its keys salted for `domain`: the similarity index then
    /// files a page where only its own domain's pages look.
    pub fn signature(self, signature: &Signature, domain: Domain) -> Signature {
        // Each key keeps its distribution (xor with one 32-bit value per domain).
        signature.salted(self.of(domain) as u32)
    }
}

/// The dedup index key of a stored content: its domain in the low 16 bits, 16
/// bits of its salted hash above ([`DomainSalt::content_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentKey(u32);

impl ContentKey {
    /// The key as the index and the entry keep it.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// A key from its raw form (an entry's).
    pub const fn from_raw(raw: u32) -> Self {
        ContentKey(raw)
    }

    /// The domain the key belongs to.
    pub const fn domain(self) -> Domain {
        Domain(self.0 as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_keeps_its_domain_and_a_hash_is_salted_per_domain() {
        let salt = DomainSalt::new(0x1234_5678_9abc_def0);
        let [a, b] = [Domain(3), Domain(4)];
        let (ka, kb) = (salt.content_key(77, a), salt.content_key(77, b));
        assert_eq!((ka.domain(), kb.domain()), (a, b));
        // Same hash, another domain: never the same key.
        assert_ne!(ka, kb);
        // The hash bits differ too (salted apart), for most hashes.
        let differ = (0..1000u64)
            .filter(|&h| salt.content_key(h, a).raw() >> 16 != salt.content_key(h, b).raw() >> 16)
            .count();
        assert!(differ > 990, "{differ}");
        // Another secret moves the keys of the same domain.
        let other = DomainSalt::new(1);
        let moved = (0..1000u64)
            .filter(|&h| other.content_key(h, a) != salt.content_key(h, a))
            .count();
        assert!(moved > 990, "{moved}");
        assert_eq!(ContentKey::from_raw(ka.raw()), ka);
    }

    #[test]
    fn a_scope_names_the_domain_a_store_is_kept_in() {
        assert_eq!(DedupScope::default(), DedupScope::Domain);
        assert_eq!(DedupScope::Domain.effective(Domain(9)), Domain(9));
        assert_eq!(DedupScope::Off.effective(Domain(9)), Domain(9));
        assert_eq!(DedupScope::Global.effective(Domain(9)), Domain(0));
        assert!(DedupScope::Global.joins() && !DedupScope::Off.joins());
        for i in 0..3 {
            let scope = DedupScope::from_index(i).unwrap();
            assert!(!scope.name().is_empty());
        }
        assert_eq!(DedupScope::from_index(3), None);
    }
}
