//! Where a training iteration spends its time: forward and backward time per net and node
//! kind, for `stackflow bench --profile`.
//!
//! While a profile is running on this thread, the runner times every node's forward and
//! puts two markers on the tape around it. Backward runs the tape in reverse, so the time
//! between the marker after a node and the marker before it is that node's backward; the
//! time before the marker after a node is whatever ran between nodes (losses, selects).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

/// Time spent by one (net, kind) pair.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Row {
    /// The net (`g1`), or `-` for work between nodes.
    pub net: String,
    /// The node kind (`core.conv2d`), or the node's path when grouped by node, or
    /// `(between nodes)`.
    pub kind: String,
    /// Forward calls.
    pub calls: u64,
    /// Forward time in milliseconds.
    pub forward_ms: f64,
    /// Backward time in milliseconds.
    pub backward_ms: f64,
}

/// What a profile's rows add time up by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupBy {
    /// One row per net and node kind.
    #[default]
    Kind,
    /// One row per node.
    Node,
}

/// The rows of a running profile and the last backward marker's time.
#[derive(Default)]
pub struct Profile {
    rows: IndexMap<(String, String), Row>,
    last_mark: Option<Instant>,
    by: GroupBy,
}

/// The label of time spent on the tape between nodes.
const BETWEEN: (&str, &str) = ("-", "(between nodes)");

impl Profile {
    /// The row label of a node of kind `kind` at `path`.
    pub fn label<'a>(&self, kind: &'a str, path: &'a str) -> &'a str {
        match self.by {
            GroupBy::Kind => kind,
            GroupBy::Node => path,
        }
    }

    fn row(&mut self, net: &str, kind: &str) -> &mut Row {
        self.rows.entry((net.to_string(), kind.to_string())).or_insert_with(|| Row {
            net: net.to_string(),
            kind: kind.to_string(),
            ..Row::default()
        })
    }

    /// A node's forward took `d`.
    pub fn forward(&mut self, net: &str, kind: &str, d: Duration) {
        let r = self.row(net, kind);
        r.calls += 1;
        r.forward_ms += d.as_secs_f64() * 1e3;
    }

    /// A backward pass starts: the next marker's time counts from now.
    pub fn begin_backward(&mut self) {
        self.last_mark = Some(Instant::now());
    }

    /// Backward reached a marker: the time since the previous one belongs to `(net, kind)`,
    /// or to the work between nodes when `net` is `None`.
    pub fn mark(&mut self, owner: Option<(&str, &str)>) {
        let now = Instant::now();
        if let Some(last) = self.last_mark {
            let (net, kind) = owner.unwrap_or(BETWEEN);
            self.row(net, kind).backward_ms += (now - last).as_secs_f64() * 1e3;
        }
        self.last_mark = Some(now);
    }
}

thread_local! {
    static ACTIVE: RefCell<Option<Rc<RefCell<Profile>>>> = const { RefCell::new(None) };
}

/// Start profiling the runners of this thread (a running profile starts over).
pub fn start(by: GroupBy) {
    ACTIVE.with(|a| *a.borrow_mut() = Some(Rc::new(RefCell::new(Profile { by, ..Profile::default() }))));
}

/// Stop profiling; the rows, slowest (forward + backward) first.
pub fn finish() -> Vec<Row> {
    let Some(p) = ACTIVE.with(|a| a.borrow_mut().take()) else { return Vec::new() };
    let mut rows: Vec<Row> = p.borrow().rows.values().cloned().collect();
    rows.sort_by(|a, b| (b.forward_ms + b.backward_ms).total_cmp(&(a.forward_ms + a.backward_ms)));
    rows
}

/// The running profile of this thread, if any.
pub(crate) fn active() -> Option<Rc<RefCell<Profile>>> {
    ACTIVE.with(|a| a.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_split_backward_time_between_owners() {
        let mut p = Profile::default();
        p.forward("g1", "core.conv2d", Duration::from_millis(2));
        p.mark(None); // backward starts: nothing to attribute yet
        std::thread::sleep(Duration::from_millis(5));
        p.mark(Some(("g1", "core.conv2d")));
        std::thread::sleep(Duration::from_millis(1));
        p.mark(None);
        let conv = &p.rows[&("g1".to_string(), "core.conv2d".to_string())];
        assert_eq!(conv.calls, 1);
        assert!((conv.forward_ms - 2.0).abs() < 1e-9);
        assert!(conv.backward_ms >= 5.0, "{conv:?}");
        assert!(p.rows[&("-".to_string(), "(between nodes)".to_string())].backward_ms >= 1.0);
    }

    #[test]
    fn finish_without_start_is_empty() {
        assert!(finish().is_empty());
        start(GroupBy::Node);
        assert_eq!(active().unwrap().borrow().label("core.relu", "g1.act"), "g1.act");
        assert!(active().is_some());
        assert!(finish().is_empty());
        assert!(active().is_none());
    }
}
