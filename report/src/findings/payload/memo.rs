//! Answers remembered across the units of one segment. Consecutive lines
//! mostly share their timestamp (a busy log writes many lines a second)
//! and their User-Agent (a few browsers make most requests), and reading
//! a timestamp through a time zone or a format description, or searching
//! an agent for a dozen scanner names, costs more than the rest of the
//! line. Every answer is a pure function of the key it is stored under,
//! so remembering it changes the time taken, never the result.

use std::collections::HashMap;

/// The last key asked and its answer.
pub struct Last<V> {
    key: Vec<u8>,
    value: Option<V>,
}

impl<V: Clone> Last<V> {
    pub fn new() -> Self {
        Last {
            key: Vec::new(),
            value: None,
        }
    }

    /// The answer for `key`: the remembered one when `key` is the last
    /// key asked, else `f()`'s, remembered in its place.
    pub fn get(&mut self, key: &[u8], f: impl FnOnce() -> V) -> V {
        if let Some(v) = self.value.as_ref().filter(|_| self.key == key) {
            return v.clone();
        }
        let v = f();
        self.key.clear();
        self.key.extend_from_slice(key);
        self.value = Some(v.clone());
        v
    }
}

/// Yes/no answers by string, forgotten all at once when `cap` are held,
/// so a log with a new agent on every line costs bounded memory.
pub struct Bounded {
    map: HashMap<Box<str>, bool>,
    cap: usize,
}

impl Bounded {
    pub fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            cap,
        }
    }

    /// The answer for `key`, from `f` the first time it is asked.
    pub fn get(&mut self, key: &str, f: impl FnOnce(&str) -> bool) -> bool {
        if let Some(&v) = self.map.get(key) {
            return v;
        }
        let v = f(key);
        if self.map.len() >= self.cap {
            self.map.clear();
        }
        self.map.insert(key.into(), v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_those_of_the_function() {
        let mut last = Last::new();
        let mut calls = 0;
        for k in [b"a".as_slice(), b"a", b"b", b"a"] {
            let v = last.get(k, || {
                calls += 1;
                k.len() + k[0] as usize
            });
            assert_eq!(v, 1 + k[0] as usize);
        }
        assert_eq!(calls, 3);
        let mut b = Bounded::new(2);
        for k in ["x", "y", "z", "x", "x"] {
            assert_eq!(b.get(k, |s| s == "x"), k == "x");
        }
        assert!(b.map.len() <= 2);
    }
}
