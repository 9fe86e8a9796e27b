//! The bounded on-disk queue of readings waiting for the ingest's end-to-end ack.
//!
//! Layout under `state/queue/`:
//!
//! * `<first seq, 20 digits>.seg`: segment files of [`crate::frame`] records in strictly
//!   increasing `seq` order. Only the last segment is ever appended to.
//! * `head`: "every seq below this number is acked", written atomically but lazily
//!   ([`Queue::persist_head`]); after a crash the queue starts from an older head and the
//!   entries in between are simply sent again (the ingest acks a re-signed copy of a stored
//!   seq again without storing it twice).
//!
//! Durability: [`Queue::append`] writes each frame to the file at once (so a killed agent
//! process loses nothing it appended: the data is in the kernel's page cache);
//! [`Queue::sync`] `fdatasync`s, so a group of readings costs one flush against a power cut.
//! Only synced records are handed out by [`Queue::read_batch`], so nothing is sent that a
//! power cut could still take back.
//!
//! Crash recovery ([`Queue::open`]): each segment is scanned; the first record that is cut
//! short, fails its CRC or does not increase the seq ends the segment, and the segment is
//! truncated there (reported in [`OpenReport`]). A power cut can only tear the tail of the
//! last segment, so only unsynced readings — never handed to the outbox — are lost that way.
//!
//! Bound: the bytes of all segment files stay below `max_bytes`.
//! [`Queue::has_room`] turns false before a new reading could cross it; the agent then stops
//! reading its source (backpressure) and never drops a queued reading. Space comes back when
//! whole segments are acked and removed, so up to two segments' worth of acked records may
//! still count against the bound.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::frame::{self, Decoded, MAX_FRAME, MAX_READING, TornReason};
use crate::state;

/// Size limits of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// Bound on the queue's bytes on disk (all segments).
    pub max_bytes: u64,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes: u64,
}

impl QueueOptions {
    /// Segments of an eighth of the bound, between 4 KiB and 4 MiB.
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        QueueOptions {
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(4 * 1024, 4 * 1024 * 1024),
        }
    }
}

/// One queued reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number (assigned at enqueue, never reused).
    pub seq: u64,
    /// The reading (a JSON object, unsigned: it is signed at send time).
    pub reading: Vec<u8>,
}

/// What [`Queue::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Records not yet acked (they will be sent again).
    pub pending: u64,
    /// Segments cut at a torn or corrupt record.
    pub truncated: Vec<Truncation>,
    /// The `head` file was unreadable and was ignored (everything is resent).
    pub head_ignored: bool,
}

/// A segment cut at a bad record during [`Queue::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file.
    pub path: PathBuf,
    /// Where it was cut (bytes of intact records kept).
    pub offset: u64,
    /// Bytes dropped.
    pub dropped: u64,
    /// Why.
    pub reason: TornReason,
}

#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
    /// Bytes written.
    size: u64,
    /// Bytes written and fsynced (what [`Queue::read_batch`] may hand out).
    synced: u64,
    /// Highest seq in the segment; `None` while empty.
    last: Option<u64>,
}

/// The queue. See the module documentation.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    options: QueueOptions,
    /// Sorted by `first`; the last one is the one appended to.
    segments: VecDeque<Segment>,
    /// Append handle of the last segment.
    active: Option<File>,
    /// Encoding scratch.
    frame: Vec<u8>,
    /// Records written but not yet fsynced.
    unsynced: usize,
    dir_dirty: bool,
    /// Next record to hand out: segment (by `first`) and offset.
    cursor: (u64, u64),
    reader: Option<(u64, File)>,
    head: u64,
    head_persisted: u64,
    last_seq: Option<u64>,
    bytes: u64,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Queue {
    /// Opens (or creates) the queue in `dir`, repairing a torn tail.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory or a segment cannot be read or repaired.
    pub fn open(dir: &Path, options: QueueOptions) -> Result<(Queue, OpenReport)> {
        fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
        let mut report = OpenReport::default();
        let head_path = dir.join("head");
        let head = match state::read_u64(&head_path) {
            Ok(h) => h.unwrap_or(0),
            Err(Error::StateCorrupt { .. }) => {
                report.head_ignored = true;
                0
            }
            Err(e) => return Err(e),
        };
        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir).map_err(Error::io("list", dir))? {
            let entry = entry.map_err(Error::io("list", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(first) = parse_segment_name(&name) {
                firsts.push(first);
            } else if name.starts_with(".head.tmp-") {
                // A head write interrupted by a crash.
                let _ = fs::remove_file(entry.path());
            }
        }
        firsts.sort_unstable();

        let mut queue = Queue {
            dir: dir.to_path_buf(),
            options,
            segments: VecDeque::new(),
            active: None,
            frame: Vec::new(),
            unsynced: 0,
            dir_dirty: false,
            cursor: (0, 0),
            reader: None,
            head,
            head_persisted: head,
            last_seq: None,
            bytes: 0,
        };
        let mut cursor: Option<(u64, u64)> = None;
        for first in firsts {
            let path = dir.join(segment_name(first));
            let bytes = fs::read(&path).map_err(Error::io("read", &path))?;
            let mut offset = 0usize;
            let mut last = None;
            let mut torn = None;
            loop {
                match frame::decode(&bytes[offset..]) {
                    Decoded::End => break,
                    Decoded::Torn(reason) => {
                        torn = Some(reason);
                        break;
                    }
                    Decoded::Record { seq, frame, .. } => {
                        let increasing = queue.last_seq.is_none_or(|l| seq > l) && seq >= first;
                        if !increasing {
                            // Never written by us: treat like corruption from here on.
                            torn = Some(TornReason::BadCrc);
                            break;
                        }
                        if seq >= head {
                            report.pending += 1;
                            if cursor.is_none() {
                                cursor = Some((first, offset as u64));
                            }
                        }
                        queue.last_seq = Some(seq);
                        last = Some(seq);
                        offset += frame;
                    }
                }
            }
            if let Some(reason) = torn {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(Error::io("open", &path))?;
                f.set_len(offset as u64)
                    .map_err(Error::io("truncate", &path))?;
                f.sync_all().map_err(Error::io("fsync", &path))?;
                report.truncated.push(Truncation {
                    path: path.clone(),
                    offset: offset as u64,
                    dropped: (bytes.len() - offset) as u64,
                    reason,
                });
            }
            let fully_acked = last.is_none_or(|l| l < head);
            if fully_acked {
                fs::remove_file(&path).map_err(Error::io("remove", &path))?;
                queue.dir_dirty = true;
                continue;
            }
            queue.bytes += offset as u64;
            queue.segments.push_back(Segment {
                first,
                path,
                size: offset as u64,
                synced: offset as u64,
                last,
            });
        }
        queue.cursor = cursor.unwrap_or((u64::MAX, 0));
        if let Some(seg) = queue.segments.back() {
            let f = OpenOptions::new()
                .append(true)
                .open(&seg.path)
                .map_err(Error::io("open", &seg.path))?;
            // What a killed process wrote may still be only in the page cache.
            f.sync_data().map_err(Error::io("fsync", &seg.path))?;
            queue.active = Some(f);
        }
        if queue.dir_dirty {
            state::sync_dir(dir)?;
            queue.dir_dirty = false;
        }
        Ok((queue, report))
    }

    /// Appends a reading with its sequence number (written now, durable after [`Queue::sync`]).
    ///
    /// # Errors
    /// [`Error::Queue`] for a seq not above the last one or an oversized reading (the
    /// caller's bug), [`Error::Io`] when a new segment cannot be created.
    pub fn append(&mut self, seq: u64, reading: &[u8]) -> Result<()> {
        if reading.len() > MAX_READING {
            return Err(Error::Queue {
                reason: format!("reading of {} bytes exceeds {MAX_READING}", reading.len()),
            });
        }
        if self.last_seq.is_some_and(|l| seq <= l) {
            return Err(Error::Queue {
                reason: format!("seq {seq} does not increase"),
            });
        }
        let needs_segment = match self.segments.back() {
            None => true,
            Some(seg) => self.active.is_none() || seg.size >= self.options.segment_bytes,
        };
        if needs_segment {
            self.sync()?;
            let path = self.dir.join(segment_name(seq));
            let f = OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(&path)
                .map_err(Error::io("create", &path))?;
            self.segments.push_back(Segment {
                first: seq,
                path,
                size: 0,
                synced: 0,
                last: None,
            });
            self.active = Some(f);
            self.dir_dirty = true;
            if self.cursor.0 == u64::MAX {
                self.cursor = (seq, 0);
            }
        }
        self.frame.clear();
        frame::encode(seq, reading, &mut self.frame);
        let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err(Error::Queue {
                reason: "no segment to append to".into(),
            });
        };
        if let Err(e) = file.write_all(&self.frame) {
            // Keep the segment a clean sequence of records (e.g. after ENOSPC mid-frame).
            let _ = file.set_len(seg.size);
            return Err(Error::Io {
                op: "write",
                path: seg.path.clone(),
                source: e,
            });
        }
        seg.size += self.frame.len() as u64;
        seg.last = Some(seq);
        self.bytes += self.frame.len() as u64;
        self.unsynced += 1;
        self.last_seq = Some(seq);
        Ok(())
    }

    /// Readings appended but not yet synced.
    pub fn unsynced(&self) -> usize {
        self.unsynced
    }

    /// fsyncs the readings appended since the last sync (one `fdatasync` for the group).
    ///
    /// # Errors
    /// [`Error::Io`]; a later call retries.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced > 0 {
            let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.back_mut()) else {
                return Err(Error::Queue {
                    reason: "unsynced records without a segment".into(),
                });
            };
            file.sync_data().map_err(Error::io("fsync", &seg.path))?;
            seg.synced = seg.size;
            self.unsynced = 0;
        }
        if self.dir_dirty {
            state::sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// True while one more reading of the largest size fits under the bound.
    pub fn has_room(&self) -> bool {
        self.bytes + MAX_FRAME as u64 <= self.options.max_bytes
    }

    /// Bytes the queue occupies on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Every seq below this is acked.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The highest seq ever appended (still queued or not).
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// True when no reading waits for an ack.
    pub fn is_empty(&self) -> bool {
        self.last_seq.is_none_or(|l| l < self.head)
    }

    /// True when synced readings wait to be handed out by [`Queue::read_batch`].
    pub fn has_unread(&self) -> bool {
        let Some(index) = self.segments.iter().position(|s| s.first == self.cursor.0) else {
            return false;
        };
        self.segments
            .iter()
            .skip(index)
            .enumerate()
            .any(|(i, seg)| seg.synced > if i == 0 { self.cursor.1 } else { 0 })
    }

    /// Hands out up to `max` synced readings after the ones already handed out, in seq order.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::StateCorrupt`] when a synced record no longer decodes (the
    /// file was changed behind the agent's back).
    pub fn read_batch(&mut self, max: usize) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(index) = self.segments.iter().position(|s| s.first == self.cursor.0) else {
                break;
            };
            let (first, size, is_last) = {
                let seg = &self.segments[index];
                (seg.first, seg.synced, index + 1 == self.segments.len())
            };
            if self.cursor.1 >= size {
                if is_last {
                    break;
                }
                self.cursor = (self.segments[index + 1].first, 0);
                continue;
            }
            let path = self.segments[index].path.clone();
            if self.reader.as_ref().is_none_or(|(f, _)| *f != first) {
                let f = File::open(&path).map_err(Error::io("open", &path))?;
                self.reader = Some((first, f));
            }
            let Some((_, file)) = self.reader.as_ref() else {
                break;
            };
            // A chunk holds several records; a record never exceeds MAX_FRAME <= 64 KiB.
            let want = (size - self.cursor.1).min(64 * 1024);
            let mut chunk = vec![0u8; usize::try_from(want).unwrap_or(MAX_FRAME)];
            file.read_exact_at(&mut chunk, self.cursor.1)
                .map_err(Error::io("read", &path))?;
            let mut used = 0usize;
            while out.len() < max {
                match frame::decode(&chunk[used..]) {
                    Decoded::Record {
                        seq,
                        reading,
                        frame,
                    } => {
                        out.push(Entry {
                            seq,
                            reading: reading.to_vec(),
                        });
                        used += frame;
                    }
                    Decoded::End => break,
                    Decoded::Torn(TornReason::Short) if used > 0 => break,
                    Decoded::Torn(reason) => {
                        return Err(Error::StateCorrupt {
                            path,
                            reason: format!("{reason} at offset {}", self.cursor.1),
                        });
                    }
                }
            }
            self.cursor.1 += used as u64;
        }
        Ok(out)
    }

    /// Marks every seq below `below` as acked, and removes segments that hold nothing else.
    /// The `head` file is written later, by [`Queue::persist_head`].
    ///
    /// # Errors
    /// [`Error::Io`] when a segment cannot be removed.
    pub fn release(&mut self, below: u64) -> Result<()> {
        if below <= self.head {
            return Ok(());
        }
        self.head = below;
        while let Some(seg) = self.segments.front() {
            let is_last = self.segments.len() == 1;
            let fully_acked = if is_last {
                seg.last.is_none_or(|l| l < below) && self.unsynced == 0
            } else {
                self.segments.get(1).is_some_and(|next| next.first <= below)
            };
            if !fully_acked {
                break;
            }
            if is_last {
                self.active = None;
            }
            if self.reader.as_ref().is_some_and(|(f, _)| *f == seg.first) {
                self.reader = None;
            }
            fs::remove_file(&seg.path).map_err(Error::io("remove", &seg.path))?;
            self.bytes -= seg.size;
            self.dir_dirty = true;
            if self.cursor.0 == seg.first {
                self.cursor = match self.segments.get(1) {
                    Some(next) => (next.first, 0),
                    None => (u64::MAX, 0),
                };
            }
            self.segments.pop_front();
        }
        Ok(())
    }

    /// Writes the `head` file if it changed since the last write.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn persist_head(&mut self) -> Result<()> {
        if self.head != self.head_persisted {
            state::write_atomic(
                &self.dir.join("head"),
                format!("{}\n", self.head).as_bytes(),
            )?;
            self.head_persisted = self.head;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn small() -> QueueOptions {
        QueueOptions {
            max_bytes: 1 << 20,
            segment_bytes: 200,
        }
    }

    fn reading(n: u64) -> Vec<u8> {
        format!("{{\"n\": {n}}}").into_bytes()
    }

    fn fill(q: &mut Queue, seqs: impl IntoIterator<Item = u64>) {
        for s in seqs {
            q.append(s, &reading(s)).unwrap();
        }
        q.sync().unwrap();
    }

    #[test]
    fn append_read_release_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, report) = Queue::open(dir.path(), small()).unwrap();
        assert_eq!(report, OpenReport::default());
        assert!(q.is_empty());
        fill(&mut q, (0..30).map(|i| i * 2));
        assert!(q.segments.len() > 2, "small segments rotate");
        assert!(q.has_unread());
        let got = q.read_batch(7).unwrap();
        assert_eq!(
            got.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [0, 2, 4, 6, 8, 10, 12]
        );
        assert_eq!(got[3].reading, reading(6));
        let rest = q.read_batch(100).unwrap();
        assert_eq!(rest.len(), 23);
        assert!(q.read_batch(100).unwrap().is_empty());
        assert!(!q.has_unread());
        q.release(21).unwrap();
        q.persist_head().unwrap();
        drop(q);

        let (mut q, report) = Queue::open(dir.path(), small()).unwrap();
        assert_eq!(report.pending, 19, "seqs 22..=58 are not acked");
        let again = q.read_batch(100).unwrap();
        assert_eq!(again.first().unwrap().seq, 22);
        assert_eq!(again.len(), 19);
        q.release(59).unwrap();
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
        assert!(q.segments.is_empty());
        // appending after a full drain starts a new segment
        fill(&mut q, [100, 101]);
        assert_eq!(q.read_batch(10).unwrap().len(), 2);
    }

    #[test]
    fn unsynced_records_are_not_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, _) = Queue::open(dir.path(), small()).unwrap();
        q.append(1, b"{}").unwrap();
        assert!(q.read_batch(10).unwrap().is_empty());
        assert_eq!(q.unsynced(), 1);
        q.sync().unwrap();
        assert_eq!(q.read_batch(10).unwrap().len(), 1);
        assert!(q.append(1, b"{}").is_err(), "seq must increase");
    }

    #[test]
    fn has_room_turns_false_at_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let opts = QueueOptions {
            max_bytes: MAX_FRAME as u64 + 100,
            segment_bytes: 4096,
        };
        let (mut q, _) = Queue::open(dir.path(), opts).unwrap();
        let mut seq = 0;
        while q.has_room() {
            q.append(seq, &reading(seq)).unwrap();
            seq += 1;
        }
        assert!(q.bytes() <= opts.max_bytes);
        assert!(seq > 0);
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut q, _) = Queue::open(dir.path(), QueueOptions::with_max_bytes(1 << 20)).unwrap();
        fill(&mut q, 0..10);
        let path = q.segments.back().unwrap().path.clone();
        drop(q);
        let len = fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        let (mut q, report) =
            Queue::open(dir.path(), QueueOptions::with_max_bytes(1 << 20)).unwrap();
        assert_eq!(report.pending, 9);
        assert_eq!(report.truncated.len(), 1);
        assert_eq!(report.truncated[0].reason, TornReason::Short);
        let got = q.read_batch(100).unwrap();
        assert_eq!(
            got.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
        // appending after the repair continues cleanly
        fill(&mut q, [9]);
        assert_eq!(q.read_batch(100).unwrap()[0].seq, 9);
    }
}
