//! The download: HTTPS with mutual TLS and byte ranges on the async side, the slot writer (the
//! engine, fsyncs, the journal) on a blocking thread, chunks passed between them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use iotsec_ota::supervisor::now_ms;
use iotsec_ota::{SignedManifest, SlotId, UpdateState};
use tokio::sync::{mpsc, oneshot};

use super::worker::{FromOta, Job, Journal, hex, open_engine};
use super::{HTTP_TIMEOUT, MAX_ATTEMPTS, OtaSettings, Report, ServerUrl, percent};

enum Write {
    Chunk(Bytes),
    Finish,
}

/// Downloads `job` into the inactive slot and installs it as the trial. Returns the time it
/// took (ms) or why it failed.
pub(super) async fn download(
    job: Job,
    settings: Arc<OtaSettings>,
    tls: Arc<rustls::ClientConfig>,
    journal: PathBuf,
    tx: mpsc::UnboundedSender<FromOta>,
) -> std::result::Result<u64, String> {
    let started = Instant::now();
    let path = settings
        .server
        .path_of(&job.url)
        .ok_or("download URL is not on the configured server")?
        .to_string();
    let (chunks_tx, chunks_rx) = mpsc::channel::<Write>(16);
    let (start_tx, start_rx) = oneshot::channel();
    let writer = {
        let (job, settings, tx) = (job.clone(), Arc::clone(&settings), tx.clone());
        tokio::task::spawn_blocking(move || {
            write_slot(&job, &settings, &journal, chunks_rx, start_tx, &tx)
        })
    };
    let writer_error = |writer: tokio::task::JoinHandle<std::result::Result<(), String>>| async move {
        match writer.await {
            Ok(Err(reason)) => reason,
            Ok(Ok(())) => "the slot writer stopped".to_string(),
            Err(e) => format!("the slot writer failed: {e}"),
        }
    };
    let Ok(Ok(offset)) = start_rx.await else {
        return Err(writer_error(writer).await);
    };
    let header = job.manifest.len() as u64;
    let size = job.size;
    let _ = tx.send(FromOta::Report {
        body: Report {
            state: "downloading",
            release: Some(job.release.clone()),
            version: Some(job.version.clone()),
            progress: Some(percent(offset, size)),
            offset: Some(offset),
            size: Some(size),
            resumed_from: (offset > 0).then_some(offset),
            ..Report::default()
        }
        .to_json(),
        outcome: false,
    });
    let mut sent = offset;
    let mut failures = 0u32;
    let rate_start = Instant::now();
    let mut rate_bytes = 0u64;
    while sent < size {
        let body = fetch(
            &tls,
            &settings.server,
            &path,
            header + sent,
            header + size - 1,
        )
        .await;
        let mut body = match body {
            Ok(b) => b,
            Err(Fetch::Fatal(reason)) => return Err(reason),
            Err(Fetch::Retry(reason)) => {
                failures += 1;
                if failures >= MAX_ATTEMPTS {
                    return Err(format!("download failed {failures} times: {reason}"));
                }
                tracing::warn!(%reason, offset = sent, "download interrupted; retrying");
                tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(failures.min(5))).await;
                continue;
            }
        };
        let before = sent;
        loop {
            let frame = match tokio::time::timeout(HTTP_TIMEOUT, body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, offset = sent, "connection lost during the download");
                    break;
                }
                Err(_) => {
                    tracing::warn!(offset = sent, "download stalled");
                    break;
                }
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let rest = size - sent;
            if data.len() as u64 > rest {
                // The server asked for nothing past the signed size and sends it anyway.
                return Err("the server sent more than the signed image size".into());
            }
            sent += data.len() as u64;
            rate_bytes += data.len() as u64;
            if chunks_tx.send(Write::Chunk(data)).await.is_err() {
                return Err(writer_error(writer).await);
            }
            if let Some(rate) = settings.max_bytes_per_sec {
                let due = rate_start + Duration::from_secs_f64(rate_bytes as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if sent > before {
            failures = 0;
        } else {
            failures += 1;
            if failures >= MAX_ATTEMPTS {
                return Err(format!("no progress after {failures} attempts"));
            }
            tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(failures.min(5))).await;
        }
    }
    if chunks_tx.send(Write::Finish).await.is_err() {
        return Err(writer_error(writer).await);
    }
    match writer.await {
        Ok(Ok(())) => Ok(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
        Ok(Err(reason)) => Err(reason),
        Err(e) => Err(format!("the slot writer failed: {e}")),
    }
}

/// The blocking side: owns the engine (and the slots directory's lock) for the whole download.
fn write_slot(
    job: &Job,
    settings: &OtaSettings,
    journal: &Path,
    mut chunks: mpsc::Receiver<Write>,
    started: oneshot::Sender<std::result::Result<u64, String>>,
    tx: &mpsc::UnboundedSender<FromOta>,
) -> std::result::Result<(), String> {
    let opened = open_engine(settings);
    let (mut engine, keys) = match opened {
        Ok(e) => e,
        Err(e) => {
            let _ = started.send(Err(e.to_string()));
            return Err(e.to_string());
        }
    };
    let images = [SlotId::A, SlotId::B].map(|s| (s, engine.store_mut().image_path(s)));
    let now = now_ms();
    let resumable = job
        .resume_from
        .filter(|_| matches!(engine.state(), UpdateState::Downloading { .. }));
    let digest = SignedManifest::parse(&job.manifest)
        .map(|s| hex(&s.digest()))
        .map_err(|e| e.to_string())?;
    let download = match resumable {
        Some(offset) if offset <= job.size => {
            match engine.resume_download(&job.manifest, &keys, now, offset) {
                Ok(d) => Ok(d),
                Err(e) => {
                    tracing::warn!(error = %e, offset, "cannot resume; downloading from the start");
                    engine.begin_download(&job.manifest, &keys, now)
                }
            }
        }
        _ => engine.begin_download(&job.manifest, &keys, now),
    };
    let mut download = match download {
        Ok(d) => d,
        Err(e) => {
            let _ = started.send(Err(e.to_string()));
            return Err(e.to_string());
        }
    };
    let image = images
        .iter()
        .find(|(s, _)| *s == download.slot())
        .map(|(_, p)| p.clone())
        .unwrap_or_default();
    let mut entry = Journal {
        release: job.release.clone(),
        version: job.version.clone(),
        url: job.url.clone(),
        manifest: digest,
        offset: download.offset(),
    };
    entry.store(journal).map_err(|e| e.to_string())?;
    let _ = started.send(Ok(download.offset()));
    let step = (job.size / 10).max(64 * 1024);
    let mut next_mark = (download.offset() / step + 1) * step;
    let mut persisted_at = Instant::now();
    while let Some(w) = chunks.blocking_recv() {
        match w {
            Write::Chunk(data) => {
                download.write(&data).map_err(|e| e.to_string())?;
                let offset = download.offset();
                if offset < job.size
                    && (offset >= next_mark || persisted_at.elapsed() >= Duration::from_secs(2))
                {
                    // Durable first, then remembered, then reported: a reported percentage
                    // is always resumable after a power cut.
                    std::fs::File::open(&image)
                        .and_then(|f| f.sync_data())
                        .map_err(|e| format!("cannot sync {}: {e}", image.display()))?;
                    entry.offset = offset;
                    entry.store(journal).map_err(|e| e.to_string())?;
                    next_mark = (offset / step + 1) * step;
                    persisted_at = Instant::now();
                    let _ = tx.send(FromOta::Report {
                        body: Report {
                            state: "downloading",
                            release: Some(job.release.clone()),
                            version: Some(job.version.clone()),
                            progress: Some(percent(offset, job.size)),
                            offset: Some(offset),
                            size: Some(job.size),
                            ..Report::default()
                        }
                        .to_json(),
                        outcome: false,
                    });
                }
            }
            Write::Finish => {
                let _ = tx.send(FromOta::Report {
                    body: Report {
                        state: "verifying",
                        release: Some(job.release.clone()),
                        version: Some(job.version.clone()),
                        progress: Some(100),
                        ..Report::default()
                    }
                    .to_json(),
                    outcome: false,
                });
                download.finish().map_err(|e| e.to_string())?;
                entry.offset = job.size;
                entry.store(journal).map_err(|e| e.to_string())?;
                return Ok(());
            }
        }
    }
    // The network side gave up: the slot stays "being written", resumable.
    Ok(())
}

/// Why a request failed.
enum Fetch {
    /// Try again (network, TLS, 5xx).
    Retry(String),
    /// Pointless to repeat (401/403/404/416, a server ignoring the range).
    Fatal(String),
}

/// `GET path` with `Range: bytes=from-to` over mutual TLS; the body of a 206 whose
/// `Content-Range` is exactly the range asked for.
async fn fetch(
    tls: &Arc<rustls::ClientConfig>,
    server: &ServerUrl,
    path: &str,
    from: u64,
    to: u64,
) -> std::result::Result<hyper::body::Incoming, Fetch> {
    let request = async {
        let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| Fetch::Retry(format!("connect to {}: {e}", server.authority())))?;
        let name = rustls::pki_types::ServerName::try_from(server.host.clone())
            .map_err(|_| Fetch::Fatal(format!("bad server name {}", server.host)))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| Fetch::Retry(format!("TLS with {}: {e}", server.authority())))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| Fetch::Retry(format!("HTTP: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, server.authority())
            .header(hyper::header::RANGE, format!("bytes={from}-{to}"))
            .header(hyper::header::USER_AGENT, "iotsec-device")
            .body(Empty::<Bytes>::new())
            .map_err(|e| Fetch::Fatal(format!("request: {e}")))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| Fetch::Retry(format!("HTTP: {e}")))
    };
    let res = tokio::time::timeout(HTTP_TIMEOUT, request)
        .await
        .map_err(|_| Fetch::Retry(format!("no answer from {} in time", server.authority())))??;
    let status = res.status().as_u16();
    match status {
        206 => {}
        200 => return Err(Fetch::Fatal("the server ignored the Range request".into())),
        500..=599 => return Err(Fetch::Retry(format!("server error {status}"))),
        _ => return Err(Fetch::Fatal(format!("the server answered {status}"))),
    }
    let range = res
        .headers()
        .get(hyper::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let expected = format!("bytes {from}-{to}/");
    if !range.starts_with(&expected) {
        return Err(Fetch::Fatal(format!(
            "the server sent the range `{range}`, not bytes {from}-{to}"
        )));
    }
    Ok(res.into_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ota::JOURNAL;
    use iotsec_ota::dir::DirStore;
    use iotsec_ota::{
        Algorithm, Config as EngineConfig, Engine, HardwareId, KeySet, Manifest, SecretKey, Version,
    };
    use iotsec_testkit::{TestDir, TestPki};
    use iotsec_tls::{CaTrust, ClientTls, Identity, TrustPolicy};
    use rustls::pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const HW: &str = "acme-gw";

    fn signed(key: &SecretKey, version: &str, image: &[u8]) -> SignedManifest {
        let m = Manifest {
            version: Version::parse(version).unwrap(),
            security_counter: 1,
            hardware_id: HardwareId::new(HW).unwrap(),
            image_size: image.len() as u64,
            image_sha256: iotsec_ota::sha256(image),
            created_s: 1_700_000_000,
            expires_s: None,
        };
        SignedManifest::sign(&m, key).unwrap()
    }

    /// How the test server answers.
    #[derive(Clone, Copy)]
    enum Serve {
        /// Drops the connection after this many body bytes of the first response.
        CutFirstAfter(usize),
        /// Ignores Range and answers 200 with the whole file.
        IgnoreRange,
    }

    /// A one-file HTTPS server (the PKI's localhost certificate); returns its port and the
    /// Range headers it received.
    async fn server(
        pki: &TestPki,
        file: Vec<u8>,
        mode: Serve,
    ) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
        let chain: Vec<_> =
            rustls::pki_types::CertificateDer::pem_file_iter(pki.dir.join("server.crt"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_file(pki.dir.join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(iotsec_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tls.read_exact(&mut byte).await.is_ok() {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let range = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("range: ")
                            .or_else(|| l.strip_prefix("Range: "))
                    })
                    .unwrap_or_default()
                    .to_string();
                log.lock().unwrap().push(range.clone());
                let total = file.len();
                let (from, to) = range
                    .strip_prefix("bytes=")
                    .and_then(|r| r.split_once('-'))
                    .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
                    .unwrap();
                let body = match mode {
                    Serve::IgnoreRange => {
                        let _ = tls
                            .write_all(
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n")
                                    .as_bytes(),
                            )
                            .await;
                        file.clone()
                    }
                    _ => {
                        let _ = tls.write_all(format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{to}/{total}\r\nContent-Length: {}\r\n\r\n",
                            to - from + 1
                        ).as_bytes()).await;
                        file[from..=to].to_vec()
                    }
                };
                let body = match mode {
                    Serve::CutFirstAfter(n) if first => body[..n].to_vec(),
                    _ => body,
                };
                first = false;
                let _ = tls.write_all(&body).await;
                let _ = tls.flush().await;
                // Dropped without close_notify: a cut connection.
            }
        });
        (port, seen)
    }

    struct Rig {
        _dir: TestDir,
        settings: Arc<OtaSettings>,
        tls: Arc<rustls::ClientConfig>,
        journal: PathBuf,
        job: Job,
        bundle: Vec<u8>,
    }

    /// Slots with 1.0.0 confirmed, and a 3 MiB 2.0.0 to download.
    fn rig(pki_dir: TestDir, pki: &TestPki) -> Rig {
        let key = SecretKey::from_seed(Algorithm::Ed25519, &[3; 32]).unwrap();
        let keys = KeySet::factory([key.public_key()]).unwrap();
        let slots = pki_dir.join("slots");
        let store = DirStore::open(&slots).unwrap();
        store.store_keyset(&keys).unwrap();
        store
            .store_hardware_id(&HardwareId::new(HW).unwrap())
            .unwrap();
        let mut engine =
            Engine::open(store, EngineConfig::new(HardwareId::new(HW).unwrap())).unwrap();
        let v1 = b"factory firmware".to_vec();
        let s1 = signed(&key, "1.0.0", &v1);
        let mut d = engine
            .begin_download(s1.as_bytes(), &keys, now_ms())
            .unwrap();
        d.write(&v1).unwrap();
        d.finish().unwrap();
        engine.boot(&keys, now_ms()).unwrap();
        engine.confirm(now_ms()).unwrap();
        drop(engine);
        let image: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        let s2 = signed(&key, "2.0.0", &image);
        let mut bundle = s2.as_bytes().to_vec();
        bundle.extend_from_slice(&image);
        let (cert, dkey) = pki.client("dev-1");
        let identity = Identity::from_pem_files(cert, dkey).unwrap();
        let policy = TrustPolicy::Ca(CaTrust::from_pem_file(pki.ca_cert()).unwrap());
        let tls = ClientTls::new(&policy, Some(&identity)).unwrap().config();
        let settings = OtaSettings {
            slots,
            trust: Vec::new(),
            server: ServerUrl::parse("https://localhost:1").unwrap(),
            server_trust: policy,
            hardware_id: Some(HardwareId::new(HW).unwrap()),
            max_bytes_per_sec: None,
        };
        let job = Job {
            release: "r2".into(),
            url: String::new(),
            manifest: s2.as_bytes().to_vec(),
            version: "2.0.0".into(),
            size: image.len() as u64,
            resume_from: None,
        };
        let journal = pki_dir.join(JOURNAL);
        Rig {
            _dir: pki_dir,
            settings: Arc::new(settings),
            tls,
            journal,
            job,
            bundle,
        }
    }

    fn aimed(rig: &Rig, port: u16) -> (Arc<OtaSettings>, Job) {
        let mut settings = (*rig.settings).clone();
        settings.server = ServerUrl::parse(&format!("https://localhost:{port}")).unwrap();
        let mut job = rig.job.clone();
        job.url = format!("https://localhost:{port}/firmware/r2");
        (Arc::new(settings), job)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_cut_mid_download_continues_at_the_offset_and_installs() {
        let dir = TestDir::new();
        let pki = TestPki::new(&dir, iotsec_pki::KeyAlgorithm::P256, &["dev-1"]);
        let rig = rig(dir, &pki);
        let cut = 1_234_567;
        let (port, seen) = server(&pki, rig.bundle.clone(), Serve::CutFirstAfter(cut)).await;
        let (settings, job) = aimed(&rig, port);
        let header = job.manifest.len();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let result = download(
            job,
            Arc::clone(&settings),
            Arc::clone(&rig.tls),
            rig.journal.clone(),
            tx,
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        let end = rig.bundle.len() - 1;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                format!("bytes={header}-{end}"),
                format!("bytes={}-{end}", header + cut)
            ],
            "the second request starts exactly where the first was cut"
        );
        let (engine, _) = open_engine(&settings).unwrap();
        assert!(matches!(engine.state(), UpdateState::TrialPending { .. }));
        let mut states = Vec::new();
        while let Ok(FromOta::Report { body, .. }) = rx.try_recv() {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            states.push(v["state"].as_str().unwrap().to_string());
        }
        assert_eq!(states.first().map(String::as_str), Some("downloading"));
        assert_eq!(states.last().map(String::as_str), Some("verifying"));
        assert_eq!(Journal::load(&rig.journal).unwrap().offset, rig.job.size);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_ignoring_the_range_is_refused_and_the_slot_stays_resumable() {
        let dir = TestDir::new();
        let pki = TestPki::new(&dir, iotsec_pki::KeyAlgorithm::P256, &["dev-1"]);
        let rig = rig(dir, &pki);
        let (port, _) = server(&pki, rig.bundle.clone(), Serve::IgnoreRange).await;
        let (settings, job) = aimed(&rig, port);
        let (tx, _rx) = mpsc::unbounded_channel();
        let err = download(
            job,
            Arc::clone(&settings),
            Arc::clone(&rig.tls),
            rig.journal.clone(),
            tx,
        )
        .await
        .unwrap_err();
        assert!(err.contains("ignored the Range"), "{err}");
        let (engine, _) = open_engine(&settings).unwrap();
        assert!(matches!(engine.state(), UpdateState::Downloading { .. }));
        assert_eq!(engine.installed().unwrap().version.to_string(), "1.0.0");
    }
}
