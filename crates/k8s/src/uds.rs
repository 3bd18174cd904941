//! gRPC over unix sockets: a server bound to a socket path (an old socket file there is
//! replaced, as the kubelet's own plugins do) and a client channel to one.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::K8sError;

/// Binds `path` (removing a socket file left there), creating its directory.
pub fn bind(path: &Path) -> Result<UnixListenerStream, K8sError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| K8sError::Io {
            what: "create the socket directory",
            path: dir.to_owned(),
            source,
        })?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(K8sError::Io {
                what: "remove the old socket",
                path: path.to_owned(),
                source,
            });
        }
    }
    let l = UnixListener::bind(path).map_err(|source| K8sError::Io {
        what: "bind",
        path: path.to_owned(),
        source,
    })?;
    Ok(UnixListenerStream::new(l))
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
        // A socket left by a dead process is replaced.
        let s = dir.path().join("s.sock");
        drop(bind(&s).unwrap());
        assert!(s.exists());
        let _l = bind(&s).unwrap();
        assert!(connect(&s).await.is_ok());
    }
}
