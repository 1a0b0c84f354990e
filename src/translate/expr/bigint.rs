//! Unsigned integers of any size for exact decimal and binary-to-decimal arithmetic
//! (`numeric`, and the float output in `shortest`): base-10⁹ limbs, least significant first.

use std::cmp::Ordering;

const BASE: u32 = 1_000_000_000;
const BASE_DIGITS: usize = 9;

/// An unsigned integer in base-10⁹ limbs, least significant first, without high zero limbs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mag(pub(crate) Vec<u32>);

impl Mag {
    pub(crate) fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn trim(mut self) -> Mag {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
        self
    }

    pub(crate) fn from_u128(mut v: u128) -> Mag {
        let mut limbs = Vec::new();
        while v > 0 {
            limbs.push((v % BASE as u128) as u32);
            v /= BASE as u128;
        }
        Mag(limbs)
    }

    pub(crate) fn to_u128(&self) -> Option<u128> {
        let mut v: u128 = 0;
        for &limb in self.0.iter().rev() {
            v = v.checked_mul(BASE as u128)?.checked_add(limb as u128)?;
        }
        Some(v)
    }

    pub(crate) fn cmp(&self, other: &Mag) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }

    pub(crate) fn add(&self, other: &Mag) -> Mag {
        let (long, short) = if self.0.len() >= other.0.len() {
            (self, other)
        } else {
            (other, self)
        };
        let mut out = Vec::with_capacity(long.0.len() + 1);
        let mut carry = 0u32;
        for (i, &a) in long.0.iter().enumerate() {
            let s = a + short.0.get(i).copied().unwrap_or(0) + carry;
            carry = u32::from(s >= BASE);
            out.push(if s >= BASE { s - BASE } else { s });
        }
        if carry > 0 {
            out.push(carry);
        }
        Mag(out)
    }

    /// `self - other`; requires `self >= other`.
    pub(crate) fn sub(&self, other: &Mag) -> Mag {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for (i, &a) in self.0.iter().enumerate() {
            let mut d = a as i64 - other.0.get(i).copied().unwrap_or(0) as i64 - borrow;
            borrow = i64::from(d < 0);
            if d < 0 {
                d += BASE as i64;
            }
            out.push(d as u32);
        }
        Mag(out).trim()
    }

    pub(crate) fn mul(&self, other: &Mag) -> Mag {
        if self.is_zero() || other.is_zero() {
            return Mag::default();
        }
        let mut acc = vec![0u64; self.0.len() + other.0.len()];
        for (i, &a) in self.0.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &b) in other.0.iter().enumerate() {
                let t = acc[i + j] + a as u64 * b as u64 + carry;
                acc[i + j] = t % BASE as u64;
                carry = t / BASE as u64;
            }
            let mut k = i + other.0.len();
            while carry > 0 {
                let t = acc[k] + carry;
                acc[k] = t % BASE as u64;
                carry = t / BASE as u64;
                k += 1;
            }
        }
        Mag(acc.into_iter().map(|d| d as u32).collect()).trim()
    }

    pub(crate) fn mul_small(&self, m: u32) -> Mag {
        if m == 0 || self.is_zero() {
            return Mag::default();
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut carry = 0u64;
        for &a in &self.0 {
            let t = a as u64 * m as u64 + carry;
            out.push((t % BASE as u64) as u32);
            carry = t / BASE as u64;
        }
        while carry > 0 {
            out.push((carry % BASE as u64) as u32);
            carry /= BASE as u64;
        }
        Mag(out)
    }

    pub(crate) fn divmod_small(&self, d: u32) -> (Mag, u32) {
        let mut q = vec![0u32; self.0.len()];
        let mut r = 0u64;
        for i in (0..self.0.len()).rev() {
            let cur = r * BASE as u64 + self.0[i] as u64;
            q[i] = (cur / d as u64) as u32;
            r = cur % d as u64;
        }
        (Mag(q).trim(), r as u32)
    }

    /// Truncated quotient and remainder; `d` must not be zero.
    pub(crate) fn divmod(&self, d: &Mag) -> (Mag, Mag) {
        if d.0.len() == 1 {
            let (q, r) = self.divmod_small(d.0[0]);
            return (q, Mag::from_u128(r as u128));
        }
        if self.cmp(d) == Ordering::Less {
            return (Mag::default(), self.clone());
        }
        let n = d.0.len();
        let d_hi = d.0[n - 1] as u128 * BASE as u128 + d.0[n - 2] as u128;
        let mut q = vec![0u32; self.0.len()];
        let mut r = Mag::default();
        for i in (0..self.0.len()).rev() {
            r.0.insert(0, self.0[i]);
            r = r.trim();
            if r.cmp(d) == Ordering::Less {
                continue;
            }
            // r < d·BASE, so r has at most n+1 limbs; the estimate from the top limbs is never
            // below the true quotient digit and at most two above it.
            let limb = |k: usize| r.0.get(k).copied().unwrap_or(0) as u128;
            let r_hi = (limb(n) * BASE as u128 + limb(n - 1)) * BASE as u128 + limb(n - 2);
            let mut qd = (r_hi / d_hi).min(BASE as u128 - 1) as u32;
            loop {
                let p = d.mul_small(qd);
                if p.cmp(&r) != Ordering::Greater {
                    r = r.sub(&p);
                    break;
                }
                qd -= 1;
            }
            q[i] = qd;
        }
        (Mag(q).trim(), r)
    }

    pub(crate) fn pow10(k: usize) -> Mag {
        Mag(vec![1]).mul_pow10(k)
    }

    pub(crate) fn mul_pow10(&self, k: usize) -> Mag {
        if self.is_zero() {
            return Mag::default();
        }
        let mut limbs = vec![0u32; k / BASE_DIGITS];
        limbs.extend_from_slice(&self.0);
        Mag(limbs).mul_small(10u32.pow((k % BASE_DIGITS) as u32))
    }

    /// Number of decimal digits (0 for zero).
    pub(crate) fn digits(&self) -> usize {
        match self.0.last() {
            None => 0,
            Some(&top) => (self.0.len() - 1) * BASE_DIGITS + decimal_len(top),
        }
    }

    pub(crate) fn to_decimal(&self) -> String {
        let Some((&top, rest)) = self.0.split_last() else {
            return "0".to_owned();
        };
        let mut s = top.to_string();
        for limb in rest.iter().rev() {
            s.push_str(&format!("{limb:09}"));
        }
        s
    }

    /// From ASCII decimal digits (leading zeros allowed).
    pub(crate) fn from_digits(digits: &[u8]) -> Mag {
        let mut limbs = Vec::with_capacity(digits.len() / BASE_DIGITS + 1);
        let mut end = digits.len();
        while end > 0 {
            let start = end.saturating_sub(BASE_DIGITS);
            let limb = digits[start..end]
                .iter()
                .fold(0u32, |acc, &c| acc * 10 + (c - b'0') as u32);
            limbs.push(limb);
            end = start;
        }
        Mag(limbs).trim()
    }
}

fn decimal_len(mut v: u32) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

impl Mag {
    /// One.
    pub(crate) fn one() -> Mag {
        Mag(vec![1])
    }

    /// `self × 2^k`.
    pub(crate) fn mul_pow2(&self, mut k: usize) -> Mag {
        let mut out = self.clone();
        while k > 0 {
            let step = k.min(29);
            out = out.mul_small(1 << step);
            k -= step;
        }
        out
    }
}
