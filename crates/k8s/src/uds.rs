//! gRPC over unix sockets: a server bound to a socket path (an old socket file there is
//! replaced, as the kubelet's own plugins do) and a client channel to one.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::K8sError;

/// Binds `path` (replacing a socket file left there), creating its directory. The socket
/// is bound and listening under a temporary name in the same directory, then renamed to
/// `path`: a client (the kubelet's plugin watcher, which acts on the file's creation) never
/// finds a file there that refuses connections.
pub fn bind(path: &Path) -> Result<UnixListenerStream, K8sError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| K8sError::Io {
        what: "create the socket directory",
        path: dir.to_owned(),
        source,
    })?;
    if path.is_dir() {
        return Err(K8sError::Io {
            what: "remove the old socket",
            path: path.to_owned(),
            source: std::io::Error::other("a directory is there"),
        });
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp).map_err(|source| K8sError::Io {
        what: "bind",
        path: tmp.clone(),
        source,
    })?;
    if let Err(source) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(K8sError::Io {
            what: "put in place the socket",
            path: path.to_owned(),
            source,
        });
    }
    Ok(UnixListenerStream::new(l))
}

/// Removes the socket file at `path` when it is still the one identified by `id` (a file
/// made again by someone else is left).
pub fn remove_if_same(path: &Path, id: Option<(u64, u64)>) {
    if id.is_some()
        && file_id(path) == id
        && let Err(e) = std::fs::remove_file(path)
    {
        tracing::warn!(socket = %path.display(), error = %e, "cannot remove the socket");
    }
}

/// A channel to the gRPC server on the unix socket `path` (connected now, so that a
/// missing or dead socket is an error here).
pub async fn connect(path: &Path) -> Result<Channel, K8sError> {
    let p: PathBuf = path.to_owned();
    // The URI is required by the API and unused: the connector dials the socket.
    let ep = Endpoint::from_static("http://localhost");
    ep.connect_with_connector(tower::service_fn(move |_: Uri| {
        let p = p.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
    }))
    .await
    .map_err(|source| K8sError::Connect {
        path: path.to_owned(),
        source,
    })
}

/// The identity (device, inode) of the file at `path`, `None` when there is none: a
/// socket made again (a kubelet restart) has another.
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn bind_and_connect_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = bind(&file.join("s.sock")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot create the socket directory"),
            "{e}"
        );
        let e = bind(dir.path()).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot remove the old socket"),
            "{e}"
        );
        let missing = dir.path().join("none.sock");
        let e = connect(&missing).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot connect to {}", missing.display())
        );
        // A socket left by a dead process is replaced; no temporary file is left.
        let s = dir.path().join("s.sock");
        drop(bind(&s).unwrap());
        assert!(s.exists());
        let _l = bind(&s).unwrap();
        assert!(connect(&s).await.is_ok());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        // A socket file is removed only while it is the same file.
        let id = file_id(&s);
        let _l2 = bind(&s).unwrap();
        remove_if_same(&s, id);
        assert!(s.exists());
        remove_if_same(&s, file_id(&s));
        assert!(!s.exists());
    }
}
