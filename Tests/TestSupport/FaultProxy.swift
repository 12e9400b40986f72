// An HTTP/1.1 proxy on 127.0.0.1 that sits between a client and a real registry and injects the
// faults a network produces: refused requests (500, 429), slow answers, a connection dropped in
// the middle of a body, a flipped byte. It counts the body bytes it forwards, so a test can say
// how much a resumed download really fetched.
//
// It works on HTTP messages rather than raw TCP so that a fault hits exactly the response to
// the request it is meant for, even on a kept-alive connection. Each request gets its own
// upstream connection.

import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A fault-injecting HTTP proxy in front of one upstream server.
///
/// ```swift
/// let proxy = try await FaultProxy(upstream: registry.host)
/// proxy.faults = .init(dropAfter: 600_000, matching: "/blobs/")
/// // pull from "\(proxy.host)/test/busybox:v1" …
/// print(proxy.bodyBytes(matching: "/blobs/"))
/// try await proxy.stop()
/// ```
public final class FaultProxy: Sendable {
    /// What to do to requests and responses.
    public struct Faults: Sendable {
        /// Answer this many requests (of those matching ``path``) with ``failureStatus`` before
        /// forwarding any.
        public var failFirst: Int
        /// The status of refused requests: 500, 503 or 429.
        public var failureStatus: Int
        /// Wait this long before forwarding each request.
        public var delay: Duration?
        /// Close the connection after this many body bytes of a matching response.
        public var dropAfter: Int?
        /// How many matching responses are dropped; later ones pass whole.
        public var drops: Int
        /// Stop forwarding a matching response after this many body bytes, keeping the connection
        /// open: the client hangs mid-blob (for killing it there).
        public var stallAfter: Int?
        /// Flip the bits of the body byte at this offset in every matching response.
        public var corruptAt: Int?
        /// Forward matching responses at about this many bytes per second, like a network link
        /// slower than loopback; nil forwards as fast as the client reads.
        public var bytesPerSecond: Int?
        /// Only requests whose path contains this are affected (and counted by ``FaultProxy/requests``).
        public var path: String

        /// Creates a set of faults; the default forwards everything unchanged.
        public init(
            failFirst: Int = 0, failureStatus: Int = 500, delay: Duration? = nil, dropAfter: Int? = nil, drops: Int = 1,
            stallAfter: Int? = nil, corruptAt: Int? = nil, bytesPerSecond: Int? = nil, matching path: String = "/"
        ) {
            self.failFirst = failFirst
            self.failureStatus = failureStatus
            self.delay = delay
            self.dropAfter = dropAfter
            self.drops = drops
            self.stallAfter = stallAfter
            self.corruptAt = corruptAt
            self.bytesPerSecond = bytesPerSecond
            self.path = path
        }
    }

    /// `127.0.0.1:<port>`: use it as the registry part of references.
    public let host: String
    private let upstreamPort: Int
    private let channel: any Channel
    private let state: Mutex<State>

    struct State {
        var faults = Faults()
        var refused = 0
        var dropped = 0
        var requests: [String] = []
        var bodyBytes: [String: Int] = [:]
    }

    /// Starts the proxy on a free loopback port.
    ///
    /// - Parameters:
    ///   - upstream: `127.0.0.1:<port>` of the real server.
    ///   - faults: The faults to inject; change them later with ``faults``.
    /// - Throws: ``TestSupportError`` for a malformed upstream, or NIO's error if binding fails.
    public init(upstream: String, faults: Faults = Faults()) async throws {
        guard let colon = upstream.lastIndex(of: ":"), let port = Int(upstream[upstream.index(after: colon)...]) else {
            throw TestSupportError("fault proxy upstream \"\(upstream)\" is not host:port")
        }
        upstreamPort = port
        state = Mutex(State(faults: faults))
        let box = ProxyBox()
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try child.pipeline.syncOperations.addHandler(ProxyHandler(box: box))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        host = "127.0.0.1:\(channel.localAddress?.port ?? 0)"
        box.proxy.withLock { $0 = self }
    }

    /// The faults in force; changing them affects the next request.
    public var faults: Faults {
        get { state.withLock { $0.faults } }
        set { state.withLock { $0.faults = newValue } }
    }

    /// The paths of every request seen, in order.
    public var requests: [String] { state.withLock { $0.requests } }

    /// Response body bytes forwarded to clients for requests whose path contains `path`.
    ///
    /// - Parameter path: A substring of the request path, such as a blob digest.
    /// - Returns: The total, including bytes of responses that were later dropped.
    public func bodyBytes(matching path: String) -> Int {
        state.withLock { $0.bodyBytes.filter { $0.key.contains(path) }.values.reduce(0, +) }
    }

    /// Stops accepting connections.
    public func stop() async throws {
        try await channel.close()
    }

    // MARK: Decisions, made under the lock

    enum Plan {
        case refuse(status: Int)
        case forward(delay: Duration?, cut: Cut?, corruptAt: Int?, rate: Int?)
    }

    fileprivate func plan(for path: String) -> Plan {
        state.withLock { state in
            state.requests.append(path)
            let faults = state.faults
            guard path.contains(faults.path) else { return .forward(delay: faults.delay, cut: nil, corruptAt: nil, rate: nil) }
            if state.refused < faults.failFirst {
                state.refused += 1
                return .refuse(status: faults.failureStatus)
            }
            var cut = faults.stallAfter.map { Cut(after: $0, close: false) }
            if let dropAfter = faults.dropAfter, state.dropped < faults.drops {
                state.dropped += 1
                cut = Cut(after: dropAfter, close: true)
            }
            return .forward(delay: faults.delay, cut: cut, corruptAt: faults.corruptAt, rate: faults.bytesPerSecond)
        }
    }

    fileprivate func count(_ bytes: Int, for path: String) {
        state.withLock { $0.bodyBytes[path, default: 0] += bytes }
    }

    fileprivate var upstream: (host: String, port: Int) { ("127.0.0.1", upstreamPort) }
}

/// Where a response body stops: after `after` bytes, hanging up (`close`) or stalling.
struct Cut: Sendable {
    var after: Int
    var close: Bool
}

/// Lets handlers created before `init` finishes reach the proxy.
private final class ProxyBox: Sendable {
    let proxy = Mutex<FaultProxy?>(nil)
}

/// The client-facing side: collects a request, then refuses it or forwards it upstream.
private final class ProxyHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let box: ProxyBox
    private var head: HTTPRequestHead?
    private var body: [ByteBuffer] = []

    init(box: ProxyBox) { self.box = box }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
        case .body(let part):
            body.append(part)
        case .end:
            guard let head, let proxy = box.proxy.withLock({ $0 }) else { return }
            self.head = nil
            switch proxy.plan(for: head.uri) {
            case .refuse(let status):
                let text = #"{"errors":[{"code":"UNAVAILABLE","message":"injected by the fault proxy"}]}"#
                var headers = HTTPHeaders([("Content-Length", "\(text.utf8.count)"), ("Content-Type", "application/json")])
                if status == 429 { headers.add(name: "Retry-After", value: "0") }
                let response = HTTPResponseHead(version: head.version, status: HTTPResponseStatus(statusCode: status), headers: headers)
                context.write(wrapOutboundOut(.head(response)), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            case .forward(let delay, let cut, let corruptAt, let rate):
                let client = context.channel
                let parts = body
                let forward: @Sendable () -> Void = {
                    Self.forward(head, body: parts, to: proxy, client: client, cut: cut, corruptAt: corruptAt, rate: rate)
                }
                if let delay {
                    let nanoseconds = delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
                    context.eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) { forward() }
                } else {
                    forward()
                }
            }
        }
    }

    private static func forward(
        _ head: HTTPRequestHead, body: [ByteBuffer], to proxy: FaultProxy, client: any Channel, cut: Cut?, corruptAt: Int?,
        rate: Int?
    ) {
        let (host, port) = proxy.upstream
        ClientBootstrap(group: client.eventLoop)
            .channelOption(.autoRead, value: rate == nil)
            .channelInitializer { upstream in
                upstream.eventLoop.makeCompletedFuture {
                    try upstream.pipeline.syncOperations.addHTTPClientHandlers()
                    try upstream.pipeline.syncOperations.addHandler(
                        RelayHandler(proxy: proxy, path: head.uri, client: client, cut: cut, corruptAt: corruptAt, rate: rate))
                }
            }
            .connect(host: host, port: port)
            .whenComplete { result in
                switch result {
                case .success(let upstream):
                    upstream.write(HTTPClientRequestPart.head(head), promise: nil)
                    for part in body { upstream.write(HTTPClientRequestPart.body(.byteBuffer(part)), promise: nil) }
                    upstream.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                case .failure:
                    client.close(promise: nil)
                }
            }
    }
}

/// The upstream side of one request: passes the response back, counting, corrupting or cutting
/// its body.
private final class RelayHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let proxy: FaultProxy
    private let path: String
    private let client: any Channel
    private let cut: Cut?
    private let corruptAt: Int?
    private let rate: Int?
    private var offset = 0
    private var sinceLastRead = 0
    private var stopped = false

    init(proxy: FaultProxy, path: String, client: any Channel, cut: Cut?, corruptAt: Int?, rate: Int?) {
        self.proxy = proxy
        self.path = path
        self.client = client
        self.cut = cut
        self.corruptAt = corruptAt
        self.rate = rate
    }

    // With a rate, the upstream channel does not read on its own: each read is asked for after
    // the time the previous one's bytes take at that rate.
    func channelActive(context: ChannelHandlerContext) {
        if rate != nil { context.read() }
        context.fireChannelActive()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard let rate else { return }
        let wait = TimeAmount.nanoseconds(Int64(sinceLastRead) * 1_000_000_000 / Int64(max(rate, 1)))
        sinceLastRead = 0
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: wait) { bound.value.read() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !stopped else {
            if case .end = unwrapInboundIn(data) { context.close(promise: nil) }
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head):
            client.write(HTTPServerResponsePart.head(head), promise: nil)
        case .body(var part):
            if let cut, offset + part.readableBytes >= cut.after {
                let keep = cut.after - offset
                stopped = true
                let client = self.client
                let last = part.readSlice(length: max(keep, 0)).map(send) ?? client.eventLoop.makeSucceededVoidFuture()
                guard cut.close else { return }  // stall: the rest of the body is read and dropped
                // Hang up on the client mid-body, once what was allowed through is on the wire.
                context.close(promise: nil)
                last.whenComplete { _ in client.close(promise: nil) }
                return
            }
            if let corruptAt, (offset..<offset + part.readableBytes).contains(corruptAt),
                let byte = part.getInteger(at: part.readerIndex + corruptAt - offset, as: UInt8.self)
            {
                part.setInteger(~byte, at: part.readerIndex + corruptAt - offset)
            }
            send(part)
        case .end(let trailers):
            client.writeAndFlush(HTTPServerResponsePart.end(trailers), promise: nil)
            context.close(promise: nil)
        }
    }

    @discardableResult
    private func send(_ part: ByteBuffer) -> EventLoopFuture<Void> {
        offset += part.readableBytes
        sinceLastRead += part.readableBytes
        proxy.count(part.readableBytes, for: path)
        return client.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(part)))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        client.close(promise: nil)
        context.close(promise: nil)
    }
}
