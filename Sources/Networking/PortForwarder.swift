import CNetlink
import ContainerKernel
import Glibc
import NIOCore
import NIOPosix
import Synchronization
import SystemSupport

/// Publishes one container port on the host: a userland proxy that accepts on the host port
/// and connects each client to the container's address (Docker's `docker-proxy` does the same).
///
/// The host port is reserved by ``start()``, before the container runs, so a taken port is
/// a typed error up front. The port only *listens* while the container does: Berth asks the
/// container's namespace which TCP ports listen (`sock_diag`, what `ss -ltn` reads) and until
/// the container listens, the host port refuses connections exactly as a closed port would.
/// So a client that waits for the published port to accept connections waits for the
/// container's server, not for the proxy.
///
/// ```swift
/// let forwarder = PortForwarder(try PortMapping(parsing: "127.0.0.1:0:80"),
///                               containerAddress: endpoint.ipv4Address, netnsPath: sandbox.netnsPath!)
/// let port = try forwarder.start()   // the port the kernel picked
/// // … http://127.0.0.1:\(port)/ reaches the container's port 80 once it listens …
/// forwarder.stop()
/// ```
///
/// Bytes are copied by SwiftNIO's event loops (`MultiThreadedEventLoopGroup.singleton`), both
/// directions with backpressure; half-closed connections stay half-open as TCP allows.
///
/// A published UDP port keeps a session (a socket towards the container) per client address,
/// closed after 90 s without traffic; since anyone may send from any source port, it keeps at
/// most 1024 of them and closes the least recently used one for a new client.
public final class PortForwarder: Sendable {
    /// What is published.
    public let mapping: PortMapping
    /// The container's address the proxy connects to.
    public let containerAddress: IPv4Address
    /// The container's network namespace, asked whether the container port listens.
    public let netnsPath: String
    /// How many client sessions (each a socket) a published UDP port keeps at most.
    let maxDatagramSessions: Int

    /// How often the container's listening state is checked while it does not listen: a wait
    /// for the port sees it open at most this long after the container listens.
    static let idlePoll = Duration.milliseconds(50)
    /// How often it is checked while it listens (to stop listening when the container stops).
    static let activePoll = Duration.milliseconds(250)

    /// Host ports reserved by forwarders of this process. The listening socket has
    /// `SO_REUSEADDR` (a restarted container gets its port back despite connections in
    /// TIME_WAIT), which would let a second reservation of ours bind while the first is not
    /// listening: this set refuses it.
    private static let reserved = Mutex<Set<String>>([])

    private struct State {
        var fd: Int32 = -1
        var hostPort: UInt16 = 0
        var listening = false
        var token: UInt64?
        var connections: [ObjectIdentifier: any Channel] = [:]
        /// The UDP relay's channel, which owns the UDP socket.
        var datagramChannel: (any Channel)?
        var watcher: Task<Void, Never>?
        var started = false
        var stopped = false
    }
    private let state = Mutex(State())

    /// Prepares to publish `mapping`; nothing happens until ``start()``.
    ///
    /// - Parameters:
    ///   - mapping: The host and container ports.
    ///   - containerAddress: The container's address on a network the host reaches (its
    ///     bridge endpoint's ``Endpoint/ipv4Address``).
    ///   - netnsPath: The container's network namespace (``Sandbox/netnsPath``).
    public convenience init(_ mapping: PortMapping, containerAddress: IPv4Address, netnsPath: String) {
        self.init(mapping, containerAddress: containerAddress, netnsPath: netnsPath,
                  maxDatagramSessions: DatagramRelay.defaultMaxSessions)
    }

    /// As the public initializer, with the cap of a UDP port's client sessions (tests lower it).
    init(_ mapping: PortMapping, containerAddress: IPv4Address, netnsPath: String, maxDatagramSessions: Int) {
        self.mapping = mapping
        self.containerAddress = containerAddress
        self.netnsPath = netnsPath
        self.maxDatagramSessions = maxDatagramSessions
    }

    /// The host port, once started: the mapping's, or the one picked for host port 0.
    public var hostPort: UInt16 { state.withLock { $0.hostPort } }

    /// Reserves the host port and starts forwarding as soon as the container listens.
    ///
    /// - Returns: The host port (the one picked when the mapping asks for port 0).
    /// - Throws: ``NetworkError``: ``NetworkError/Code/portInUse`` when the host port is taken,
    ///   ``NetworkError/Code/invalidArgument``
    ///   when already started, ``NetworkError/Code/io`` when a socket cannot be made.
    @discardableResult
    public func start() throws(NetworkError) -> UInt16 {
        let first = state.withLock { state in
            defer { state.started = true }
            return !state.started && !state.stopped
        }
        guard first else {
            throw NetworkError(code: .invalidArgument, detail: "publish \(mapping): the forwarder was already started")
        }
        do {
            return mapping.transport == .tcp ? try startListener() : try startDatagramRelay()
        } catch {
            state.withLock { $0.started = false }
            throw error
        }
    }

    private func startListener() throws(NetworkError) -> UInt16 {
        let diagnostics = try NetlinkSocket(namespace: netnsPath, protocol: NetlinkSocket.socketDiagnostics)
        let (fd, port) = try reserve()
        do { try adopt(port: port) { $0.fd = fd } } catch {
            close(fd)
            throw error
        }
        // Weak, and never held across the sleep: a forwarder dropped without stop() still
        // deinits, and its deinit stops the watcher.
        let watcher = Task.detached { [weak self] in
            while !Task.isCancelled, let delay = self?.follow(diagnostics) {
                try? await Task.sleep(for: delay)
            }
        }
        let kept = state.withLock { state in
            guard !state.stopped else { return false }
            state.watcher = watcher
            return true
        }
        if !kept { watcher.cancel() }
        return port
    }

    /// Stops forwarding: closes the host port and every forwarded connection. Idempotent.
    public func stop() {
        let stopping = state.withLock { state in
            defer {
                state = State()
                state.stopped = true
            }
            return state
        }
        stopping.watcher?.cancel()
        if stopping.fd >= 0 {
            if let token = stopping.token { IOLoop.shared.unregister(stopping.fd, token: token) }
            close(stopping.fd)
        }
        stopping.datagramChannel?.close(promise: nil)  // closes the UDP socket
        for channel in stopping.connections.values { channel.close(promise: nil) }
        if stopping.hostPort != 0 { unreserve(stopping.hostPort) }
    }

    /// Binds the UDP host port and hands it to a ``DatagramRelay`` on an event loop.
    private func startDatagramRelay() throws(NetworkError) -> UInt16 {
        let target = try containerSocketAddress()
        let cap = maxDatagramSessions
        let (fd, port) = try reserve()
        do { try adopt(port: port) { _ in } } catch {
            close(fd)
            throw error
        }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        DatagramRelay(target: target, maxSessions: cap))
                }
            }
            .withBoundSocket(fd)
            .whenComplete { [self] result in
                // On failure the channel that took the socket has closed it already.
                guard case .success(let channel) = result else { return }
                let keep = state.withLock { state in
                    guard !state.stopped else { return false }
                    state.datagramChannel = channel
                    return true
                }
                if !keep { channel.close(promise: nil) }
            }
        return port
    }

    /// Records the reserved port, unless ``stop()`` came first (then it is given back).
    private func adopt(port: UInt16, _ body: (inout State) -> Void) throws(NetworkError) {
        let adopted = state.withLock { state in
            guard !state.stopped else { return false }
            state.hostPort = port
            body(&state)
            return true
        }
        guard adopted else {
            unreserve(port)
            throw NetworkError(
                code: .invalidArgument, detail: "publish \(mapping): the forwarder was stopped while starting")
        }
    }

    private func containerSocketAddress() throws(NetworkError) -> SocketAddress {
        do {
            return try SocketAddress(ipAddress: containerAddress.description, port: Int(mapping.containerPort))
        } catch {
            throw NetworkError(
                code: .invalidArgument, detail: "publish \(mapping): container address \(containerAddress): \(error)")
        }
    }

    deinit { stop() }

    // MARK: - Listening follows the container

    /// Binds the host port (without listening yet) and records it as ours.
    private func reserve() throws(NetworkError) -> (Int32, UInt16) {
        // Port 0 is resolved to a concrete port first: a socket bound to port 0 loses its port
        // when it stops listening (tcp_set_state → inet_put_port, unless the port was given
        // explicitly), and this one stops listening whenever the container does.
        for _ in 0..<8 {
            let port = try mapping.hostPort != 0 ? mapping.hostPort : freePort()
            let key = reservationKey(port)
            let fresh = Self.reserved.withLock { $0.insert(key).inserted }
            guard fresh else {
                if mapping.hostPort != 0 {
                    throw NetworkError(
                        code: .portInUse,
                        detail:
                            "publish \(mapping): host port \(mapping.hostIP):\(port)/\(mapping.transport.rawValue) is published already"
                    )
                }
                continue
            }
            do {
                return (try bindSocket(port: port, reuseAddress: true), port)
            } catch  where error.code == .portInUse && mapping.hostPort == 0 {
                _ = Self.reserved.withLock { $0.remove(key) }  // taken between probe and bind: pick again
            } catch {
                _ = Self.reserved.withLock { $0.remove(key) }
                throw error
            }
        }
        throw NetworkError(code: .portInUse, detail: "publish \(mapping): no free host port found")
    }

    private func freePort() throws(NetworkError) -> UInt16 {
        let probe = try bindSocket(port: 0, reuseAddress: false)
        defer { close(probe) }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = try NetworkError.from(try sys("read the port picked for \(mapping)") {
            withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(probe, $0, &length) }
            }
        })
        return UInt16(bigEndian: address.sin_port)
    }

    private func bindSocket(port: UInt16, reuseAddress: Bool) throws(NetworkError) -> Int32 {
        let type = mapping.transport == .tcp ? SOCK_STREAM : SOCK_DGRAM
        let fd = try NetworkError.from(try sys("open a socket for \(mapping)") {
            socket(AF_INET, Int32(type.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        })
        var one: Int32 = 1
        if reuseAddress { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = mapping.hostIP.value.bigEndian
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw NetworkError.system(
                code == EADDRINUSE ? .portInUse : .io, "publish \(mapping): bind \(mapping.hostIP):\(port)", errno: code
            )
        }
        return fd
    }

    private func reservationKey(_ port: UInt16) -> String { "\(mapping.hostIP):\(port)/\(mapping.transport.rawValue)" }

    private func unreserve(_ port: UInt16) {
        _ = Self.reserved.withLock { $0.remove(reservationKey(port)) }
    }

    /// Checks once whether the container listens and makes the host port follow.
    ///
    /// A netlink dump of a container's few listening sockets takes microseconds: short enough
    /// for a pool thread, unlike the blocking waits Berth keeps off the pool.
    ///
    /// - Returns: How long to wait before the next check.
    private func follow(_ diagnostics: NetlinkSocket) -> Duration {
        let listening = (try? diagnostics.tcpListening(on: mapping.containerPort)) ?? false
        setListening(listening)
        return listening ? Self.activePoll : Self.idlePoll
    }

    /// Makes the host port listen (and accept on the I/O loop) or stop listening.
    ///
    /// Stopping uses `shutdown(SHUT_RD)` on the listening socket: Linux then closes the
    /// listener (inet_shutdown → tcp_disconnect), resetting queued connections, but keeps the
    /// explicitly bound port, so a later `listen` works and nobody else can take the port.
    private func setListening(_ wanted: Bool) {
        state.withLock { state in
            guard state.fd >= 0, state.listening != wanted else { return }
            if wanted {
                guard listen(state.fd, SOMAXCONN) == 0 else { return }
                let fd = state.fd
                // EPOLLIN only while listening: a TCP socket in CLOSE state polls as EPOLLHUP
                // forever, which would spin a level-triggered loop.
                state.token = try? IOLoop.shared.register(fd, events: IOLoop.readable) { [weak self] _ in
                    self?.acceptAll()
                }
            } else {
                if let token = state.token { IOLoop.shared.unregister(state.fd, token: token) }
                state.token = nil
                shutdown(state.fd, Int32(SHUT_RD))
            }
            state.listening = wanted
        }
    }

    /// Accepts every queued client (on the I/O loop thread; `accept4` does not block).
    private func acceptAll() {
        while true {
            // Under the lock: stop() may close the fd, and its number may be reused at once.
            let client = state.withLock { state -> Int32 in
                guard state.listening, state.fd >= 0 else { return -1 }
                return ck_nl_accept(state.fd)
            }
            guard client >= 0 else { return }
            forward(client)
        }
    }

    /// Connects to the container and glues the client to that connection; when the container
    /// refuses, resets the client (as its closed port would) and stops listening at once.
    private func forward(_ client: Int32) {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        guard let target = try? containerSocketAddress() else {
            Self.reset(client)
            return
        }
        loop.execute { [self] in
            let (clientGlue, containerGlue) = GlueHandler.matchedPair()
            let clientSide = NIOLoopBound(clientGlue, eventLoop: loop)
            let containerSide = NIOLoopBound(containerGlue, eventLoop: loop)
            Self.bootstrap(loop, containerSide).connect(to: target).whenComplete { result in
                switch result {
                case .failure:
                    Self.reset(client)
                    self.setListening(false)
                case .success(let container):
                    Self.bootstrap(loop, clientSide).withConnectedSocket(client).whenComplete { result in
                        switch result {
                        case .failure:
                            // The channel that took the client's socket has closed it already.
                            container.close(promise: nil)
                        case .success(let client):
                            self.track(container)
                            self.track(client)
                        }
                    }
                }
            }
        }
    }

    private static func bootstrap(_ loop: any EventLoop, _ glue: NIOLoopBound<GlueHandler>) -> ClientBootstrap {
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(5))
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(glue.value) }
            }
    }

    /// Keeps a channel until it closes, so ``stop()`` can close it.
    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let open = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.connections[id] = channel
            return true
        }
        guard open else {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.connections.removeValue(forKey: id) }
        }
    }

    /// Closes with an RST (`SO_LINGER` 0), what a client of a closed port gets.
    private static func reset(_ fd: Int32) {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }
}
