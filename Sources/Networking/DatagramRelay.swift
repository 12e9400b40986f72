import NIOCore
import NIOPosix

/// Forwards UDP datagrams from a published host port to the container and replies back.
///
/// UDP has no connections, so the relay keeps a *session* per client address: a socket of its
/// own towards the container, so the container's replies can be told apart and returned to the
/// right client. A session idle for ``idleTimeout`` is closed, as Docker's UDP proxy does (its
/// `UDPConnTrackTimeout` is 90 s).
///
/// Anyone who can send to the port picks the source addresses, so the sessions are capped
/// (``defaultMaxSessions``): a datagram from a new client when the cap is reached closes the
/// least recently used session first. A flood from many source ports costs the sessions of
/// idle clients, never more descriptors than the cap.
final class DatagramRelay: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    static let idleTimeout = TimeAmount.seconds(90)
    /// Sessions (each a socket) one published UDP port keeps at most.
    static let defaultMaxSessions = 1024
    /// Datagrams held for a session whose socket is still binding; later ones are dropped.
    static let maxPending = 16

    private struct Session {
        /// Tells a session from a later one of the same client, when a bind completes.
        var id: UInt64
        var channel: (any Channel)?
        var pending: [ByteBuffer] = []
        var lastUsed = NIODeadline.now()
    }

    private let target: SocketAddress
    private let maxSessions: Int
    private var sessions: [SocketAddress: Session] = [:]
    private var nextID: UInt64 = 0
    private var sweeper: RepeatedTask?

    init(target: SocketAddress, maxSessions: Int = DatagramRelay.defaultMaxSessions) {
        self.target = target
        self.maxSessions = max(1, maxSessions)
    }

    func channelActive(context: ChannelHandlerContext) {
        let front = NIOLoopBound(self, eventLoop: context.eventLoop)
        sweeper = context.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(15), delay: .seconds(15)) { _ in
            front.value.closeIdleSessions()
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        sweeper?.cancel()
        for session in sessions.values { session.channel?.close(promise: nil) }
        sessions.removeAll()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let datagram = unwrapInboundIn(data)
        let client = datagram.remoteAddress
        if var session = sessions[client] {
            session.lastUsed = .now()
            if let channel = session.channel {
                channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: datagram.data), promise: nil)
            } else if session.pending.count < Self.maxPending {
                session.pending.append(datagram.data)  // the session's socket is still binding
            }
            sessions[client] = session
            return
        }
        if sessions.count >= maxSessions { evictLeastRecentlyUsed() }
        nextID += 1
        sessions[client] = Session(id: nextID, pending: [datagram.data])
        openSession(for: client, id: nextID, context: context)
    }

    /// Closes the session used longest ago (one still binding closes its socket when the bind
    /// completes). A linear scan: it runs only for a new client at the cap.
    private func evictLeastRecentlyUsed() {
        guard let (client, session) = sessions.min(by: { $0.value.lastUsed < $1.value.lastUsed }) else { return }
        session.channel?.close(promise: nil)
        sessions[client] = nil
    }

    private func openSession(for client: SocketAddress, id: UInt64, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let front = NIOLoopBound((relay: self, channel: context.channel), eventLoop: loop)
        let reply = NIOLoopBound(
            ReplyHandler(front: context.channel, client: client, container: target), eventLoop: loop)
        DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(reply.value) }
            }
            .bind(host: "0.0.0.0", port: 0)
            .whenComplete { result in
                let relay = front.value.relay
                switch result {
                case .failure:
                    if relay.sessions[client]?.id == id { relay.sessions[client] = nil }
                case .success(let channel):
                    // Evicted (or replaced by a later session of the client) while binding.
                    guard var session = relay.sessions[client], session.id == id, front.value.channel.isActive else {
                        channel.close(promise: nil)
                        return
                    }
                    for data in session.pending {
                        channel.write(AddressedEnvelope(remoteAddress: relay.target, data: data), promise: nil)
                    }
                    channel.flush()
                    session.pending = []
                    session.channel = channel
                    relay.sessions[client] = session
                }
            }
    }

    private func closeIdleSessions() {
        let cutoff = NIODeadline.now() - Self.idleTimeout
        for (client, session) in sessions where session.lastUsed < cutoff {
            session.channel?.close(promise: nil)
            sessions[client] = nil
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A datagram the kernel refused (ICMP port unreachable reported on the socket) is not
        // fatal for the published port: UDP is lossy by contract.
    }
}

/// Returns the container's replies on one session to the client it belongs to.
private final class ReplyHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let front: any Channel
    private let client: SocketAddress
    private let container: SocketAddress

    init(front: any Channel, client: SocketAddress, container: SocketAddress) {
        self.front = front
        self.client = client
        self.container = container
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        // The session socket has a port anyone could send to: pass on only the container's replies.
        guard reply.remoteAddress == container else { return }
        front.writeAndFlush(AddressedEnvelope(remoteAddress: client, data: reply.data), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Port unreachable while the container does not listen: drop, as the network would.
    }
}
