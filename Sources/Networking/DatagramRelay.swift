import NIOCore
import NIOPosix

/// Forwards UDP datagrams from a published host port to the container and replies back.
///
/// UDP has no connections, so the relay keeps a *session* per client address: a socket of its
/// own towards the container, so the container's replies can be told apart and returned to the
/// right client. A session idle for ``idleTimeout`` is closed, as Docker's UDP proxy does (its
/// `UDPConnTrackTimeout` is 90 s).
final class DatagramRelay: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    static let idleTimeout = TimeAmount.seconds(90)

    private struct Session {
        var channel: (any Channel)?
        var pending: [ByteBuffer] = []
        var lastUsed = NIODeadline.now()
    }

    private let target: SocketAddress
    private var sessions: [SocketAddress: Session] = [:]
    private var sweeper: RepeatedTask?

    init(target: SocketAddress) { self.target = target }

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
            } else {
                session.pending.append(datagram.data)  // the session's socket is still binding
            }
            sessions[client] = session
            return
        }
        sessions[client] = Session(pending: [datagram.data])
        openSession(for: client, context: context)
    }

    private func openSession(for client: SocketAddress, context: ChannelHandlerContext) {
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
                    relay.sessions[client] = nil
                case .success(let channel):
                    guard var session = relay.sessions[client], front.value.channel.isActive else {
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
