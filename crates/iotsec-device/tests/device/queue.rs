//! The disk queue after a crash: a torn or corrupt tail record is dropped, earlier ones kept.

use std::fs::{self, OpenOptions};
use std::io::Write as _;

use iotsec_device::frame::TornReason;
use iotsec_device::queue::{Queue, QueueOptions};

fn opts() -> QueueOptions {
    QueueOptions::with_max_bytes(1 << 20)
}

/// Ten readings 0..10 in one segment; returns the segment path.
fn ten(dir: &std::path::Path) -> std::path::PathBuf {
    let (mut q, _) = Queue::open(dir, opts()).unwrap();
    for seq in 0..10u64 {
        q.append(seq, format!("{{\"n\": {seq}}}").as_bytes())
            .unwrap();
    }
    q.sync().unwrap();
    drop(q);
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap()
}

fn reopen(dir: &std::path::Path) -> (Vec<u64>, iotsec_device::queue::OpenReport) {
    let (mut q, report) = Queue::open(dir, opts()).unwrap();
    let seqs = q
        .read_batch(100)
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect();
    (seqs, report)
}

#[test]
fn truncated_tail_record_is_dropped_on_open_earlier_records_kept() {
    for cut in [1u64, 5, 12] {
        let dir = tempfile::tempdir().unwrap();
        let seg = ten(dir.path());
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - cut)
            .unwrap();
        let (seqs, report) = reopen(dir.path());
        assert_eq!(seqs, (0..9).collect::<Vec<_>>(), "cut {cut}");
        assert_eq!(report.truncated.len(), 1);
        assert_eq!(report.truncated[0].reason, TornReason::Short);
        // The repair is durable: a second open finds nothing to cut.
        let (seqs, report) = reopen(dir.path());
        assert_eq!(seqs.len(), 9);
        assert!(report.truncated.is_empty());
    }
}

#[test]
fn zeros_or_a_flipped_byte_in_the_tail_are_dropped() {
    // Zeros after the last record (file extended, data never written).
    let dir = tempfile::tempdir().unwrap();
    let seg = ten(dir.path());
    OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&[0u8; 40])
        .unwrap();
    let (seqs, report) = reopen(dir.path());
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    assert_eq!(report.truncated[0].reason, TornReason::BadLength);
    assert_eq!(report.truncated[0].dropped, 40);

    // A byte of the last record's reading changed.
    let dir = tempfile::tempdir().unwrap();
    let seg = ten(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    fs::write(&seg, &bytes).unwrap();
    let (seqs, report) = reopen(dir.path());
    assert_eq!(seqs, (0..9).collect::<Vec<_>>());
    assert_eq!(report.truncated[0].reason, TornReason::BadCrc);
}

#[test]
fn acked_head_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    ten(dir.path());
    let (mut q, _) = Queue::open(dir.path(), opts()).unwrap();
    assert_eq!(q.read_batch(100).unwrap().len(), 10);
    q.release(6).unwrap();
    q.persist_head().unwrap();
    drop(q);
    let (seqs, report) = reopen(dir.path());
    assert_eq!(seqs, [6, 7, 8, 9]);
    assert_eq!(report.pending, 4);
}
