//! Several listeners: each gets every durable change in commit order, one can be
//! removed without the others, and one that panics does not starve the rest.

use extentmeta::events::Event;
use extentmeta::{ExtentId, MemBackend, Store, StoreConfig};
use std::sync::{Arc, Mutex};

/// What a recorder saw: `(extent, generation)` of every write.
type Seen = Arc<Mutex<Vec<(ExtentId, u64)>>>;

fn store() -> Store {
    Store::new(MemBackend::new(2), StoreConfig::default()).expect("store")
}

/// A listener that records `(extent, generation)` of every write it sees.
fn recorder() -> (Seen, impl Fn(&Event) + Send + Sync + 'static) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let listener = move |event: &Event| {
        if let Event::Written { record, .. } = event {
            sink.lock()
                .expect("not poisoned")
                .push((record.extent(), record.generation()));
        }
    };
    (seen, listener)
}

#[test]
fn every_listener_gets_every_change_until_removed() {
    let store = store();
    let (first, a) = recorder();
    let (second, b) = recorder();
    let a = store.add_listener(a);
    store.add_listener(b);
    store
        .write(ExtentId(1), b"extent 1 generation 1")
        .expect("write");
    store
        .write(ExtentId(1), b"extent 1 generation 2")
        .expect("write");
    let both = vec![(ExtentId(1), 1), (ExtentId(1), 2)];
    assert_eq!(*first.lock().expect("not poisoned"), both);
    assert_eq!(*second.lock().expect("not poisoned"), both);
    assert!(store.remove_listener(a));
    assert!(!store.remove_listener(a), "removed once");
    store
        .write(ExtentId(2), b"extent 2 generation 1")
        .expect("write");
    assert_eq!(
        first.lock().expect("not poisoned").len(),
        2,
        "the removed one hears nothing more"
    );
    assert_eq!(
        second.lock().expect("not poisoned").last(),
        Some(&(ExtentId(2), 1))
    );
}

#[test]
fn a_panicking_listener_does_not_starve_the_others() {
    let store = store();
    store.add_listener(|_: &Event| panic!("a listener bug"));
    let (seen, listener) = recorder();
    store.add_listener(listener);
    store
        .write(ExtentId(3), b"extent 3 generation 1")
        .expect("the write completes");
    assert_eq!(*seen.lock().expect("not poisoned"), vec![(ExtentId(3), 1)]);
    assert_eq!(store.stats().listener_panics, 1);
}

#[test]
fn set_listener_replaces_all_and_clear_removes_all() {
    let store = store();
    let (added, a) = recorder();
    store.add_listener(a);
    let (set, b) = recorder();
    store.set_listener(b);
    store
        .write(ExtentId(4), b"extent 4 generation 1")
        .expect("write");
    assert!(added.lock().expect("not poisoned").is_empty(), "replaced");
    assert_eq!(set.lock().expect("not poisoned").len(), 1);
    store.clear_listener();
    store
        .write(ExtentId(4), b"extent 4 generation 2")
        .expect("write");
    assert_eq!(set.lock().expect("not poisoned").len(), 1, "cleared");
}

/// A listener may remove itself (or change the listeners) from inside its
/// call: the list is not locked while listeners run. It used to be, for a
/// record change, and the removal then waited forever on the lock its own
/// thread held.
#[test]
fn a_listener_can_remove_itself() {
    let store = Arc::new(store());
    let (seen, record) = recorder();
    let weak = Arc::downgrade(&store);
    let me = Arc::new(Mutex::new(None));
    let me_inside = Arc::clone(&me);
    let id = store.add_listener(move |event| {
        record(event);
        let id = me_inside.lock().unwrap().take();
        if let (Some(store), Some(id)) = (weak.upgrade(), id) {
            assert!(store.remove_listener(id), "removed once");
        }
    });
    *me.lock().unwrap() = Some(id);
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = Arc::clone(&store);
    std::thread::spawn(move || {
        writer.write(ExtentId(1), b"extent 1 generation 1").unwrap();
        writer.write(ExtentId(2), b"extent 2 generation 1").unwrap();
        tx.send(()).unwrap();
    });
    // Only a hang fails on time: the deadline is far beyond two writes.
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the writes returned");
    assert_eq!(
        *seen.lock().unwrap(),
        [(ExtentId(1), 1)],
        "only the first write's event, then the listener was gone"
    );
}
