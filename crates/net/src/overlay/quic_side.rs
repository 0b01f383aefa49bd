//! The QUIC half of a shared UDP socket: quinn sees an [`AsyncUdpSocket`] whose receive
//! side is fed by the overlay's receive loop (every datagram whose first byte has the QUIC
//! fixed bit 0x40 set) and whose send side writes to the same socket.

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// QUIC packets waiting for quinn; more are dropped (QUIC retransmits).
pub(crate) const QUIC_QUEUE: usize = 1024;

/// One received QUIC packet.
pub(crate) struct Packet {
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
}

/// The socket quinn is given.
pub(crate) struct QuicSide {
    socket: Arc<UdpSocket>,
    packets: Mutex<mpsc::Receiver<Packet>>,
}

impl fmt::Debug for QuicSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicSide")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl QuicSide {
    /// A QUIC side on `socket`, and the sender the receive loop feeds it through.
    pub fn new(socket: Arc<UdpSocket>) -> (QuicSide, mpsc::Sender<Packet>) {
        let (tx, rx) = mpsc::channel(QUIC_QUEUE);
        let side = QuicSide {
            socket,
            packets: Mutex::new(rx),
        };
        (side, tx)
    }
}

impl AsyncUdpSocket for QuicSide {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable {
            socket: self.socket.clone(),
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.socket
            .try_send_to(transmit.contents, transmit.destination)
            .map(|_| ())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut packets = self.packets.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        match packets.poll_recv(cx) {
            Poll::Ready(Some(packet)) => {
                let len = packet.bytes.len().min(buf.len());
                buf[..len].copy_from_slice(&packet.bytes[..len]);
                *slot = RecvMeta {
                    addr: packet.from,
                    len,
                    stride: len,
                    ecn: None,
                    dst_ip: None,
                };
                Poll::Ready(Ok(1))
            }
            // The overlay closed: nothing more will arrive. Not an error for quinn to log;
            // the endpoint is closed by its owner.
            Poll::Ready(None) => Poll::Pending,
            Poll::Pending => Poll::Pending,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// Write readiness of the shared socket, for one quinn task.
struct Writable {
    socket: Arc<UdpSocket>,
}

impl fmt::Debug for Writable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Writable")
    }
}

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.socket.poll_send_ready(cx)
    }
}
