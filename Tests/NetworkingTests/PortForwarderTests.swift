import ContainerKernel
import Foundation
import Glibc
@testable import Networking
import TestSupport
import Testing

@Suite(.serialized)
struct PortForwarderTests {
    @Test(arguments: [
        ("80", "0.0.0.0:0:80/tcp"),
        ("8080:80", "0.0.0.0:8080:80/tcp"),
        ("127.0.0.1:8080:80/tcp", "127.0.0.1:8080:80/tcp"),
        ("127.0.0.1::80", "127.0.0.1:0:80/tcp"),
        ("53:53/udp", "0.0.0.0:53:53/udp"),
        ("10.89.0.1:0:5432/TCP", "10.89.0.1:0:5432/tcp"),
    ])
    func portMappingsParseDockersSyntax(text: String, expected: String) throws {
        #expect(try PortMapping(parsing: text).description == expected)
    }

    @Test(arguments: ["", "80/sctp", "0", "70000:80", "a:b", "1.2.3:80:80", "1:2:3:4", "80:0", "[::1]:80:80"])
    func malformedPortMappingsAreRejected(text: String) {
        #expect(throws: NetworkError.self) { _ = try PortMapping(parsing: text) }
    }

    @Test func publishedPortServesTheContainersHTTPServerOnLoopback() async throws {
        try await withNetworks { networks, suffix in
            let network = try networks.create("pub-\(suffix)")
            let sandbox = try networks.prepareSandbox(
                containerID: "pub-\(suffix)", hostname: "web", mode: .bridge([network.name]))
            let endpoint = try #require(sandbox.endpoints.first)
            let root = try webRoot("published\n")
            defer { try? root.remove() }
            let forwarder = PortForwarder(
                try PortMapping(parsing: "127.0.0.1:0:80"), containerAddress: endpoint.ipv4Address,
                netnsPath: try #require(sandbox.netnsPath))
            let port = try forwarder.start()
            #expect(port != 0)
            #expect(forwarder.hostPort == port)
            let httpd = try await startHTTPServer(in: sandbox, root: root.path)
            let response = try await fetchWhenOpen(port: port)
            #expect(response.hasSuffix("\r\n\r\npublished\n"), "\(response)")

            // A second mapping of the same host port, and a port another socket listens on.
            let again = PortForwarder(
                PortMapping(hostIP: try IPv4Address("127.0.0.1"), hostPort: port, containerPort: 80),
                containerAddress: endpoint.ipv4Address, netnsPath: try #require(sandbox.netnsPath))
            do { try again.start(); Issue.record("the same host port was published twice") } catch let error
                as NetworkError
            {
                #expect(error.code == .portInUse, "\(error)")
            }
            let listener = try listeningSocket()
            defer { close(listener.fd) }
            let taken = PortForwarder(
                PortMapping(hostIP: try IPv4Address("127.0.0.1"), hostPort: listener.port, containerPort: 80),
                containerAddress: endpoint.ipv4Address, netnsPath: try #require(sandbox.netnsPath))
            do { try taken.start(); Issue.record("a port another socket listens on was published") } catch let error
                as NetworkError
            {
                #expect(error.code == .portInUse, "\(error)")
            }

            await stop(httpd)
            forwarder.stop()
            #expect(connectResult(port: port) == ECONNREFUSED)
        }
    }

    @Test func publishedPortRefusesConnectionsUntilTheContainerListens() async throws {
        try await withNetworks { networks, suffix in
            let network = try networks.create("late-\(suffix)")
            let sandbox = try networks.prepareSandbox(
                containerID: "late-\(suffix)", hostname: "late", mode: .bridge([network.name]))
            let root = try webRoot("late\n")
            defer { try? root.remove() }
            let forwarder = PortForwarder(
                try PortMapping(parsing: "127.0.0.1::80"),
                containerAddress: try #require(sandbox.endpoints.first).ipv4Address,
                netnsPath: try #require(sandbox.netnsPath))
            let port = try forwarder.start()
            defer { forwarder.stop() }
            let httpd = try await startHTTPServer(in: sandbox, root: root.path, delay: 2)
            // For the first second the container sleeps: every connection attempt is refused,
            // as a closed port refuses, so a wait for the port keeps waiting.
            let clock = ContinuousClock()
            let quiet = clock.now.advanced(by: .seconds(1))
            while clock.now < quiet {
                #expect(connectResult(port: port) == ECONNREFUSED)
                try await Task.sleep(for: .milliseconds(20))
            }
            let response = try await fetchWhenOpen(port: port)
            #expect(response.hasSuffix("late\n"), "\(response)")
            // And once the container's server is gone, the port closes again.
            await stop(httpd)
            let closed = try await waitFor { connectResult(port: port) == ECONNREFUSED }
            #expect(closed)
        }
    }
}

/// Connects to 127.0.0.1:`port` and returns 0 or the errno.
func connectResult(port: UInt16) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = loopback(port)
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    return rc == 0 ? 0 : errno
}

/// Waits (up to 10 s) for the port to accept, then sends an HTTP/1.0 GET and returns the response.
func fetchWhenOpen(port: UInt16, path: String = "/index.html") async throws -> String {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: .seconds(10))
    var last = ""
    while clock.now < deadline {
        last = httpGet(port: port, path: path)
        if last.hasPrefix("HTTP/1.") { return last }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestSupportError("GET 127.0.0.1:\(port)\(path): no response within 10 s (last: \(last))")
}

private func httpGet(port: UInt16, path: String) -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = loopback(port)
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard rc == 0 else { return "connect: errno \(errno)" }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: localhost\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count <= 0 { break }
        response += buffer[0..<count]
    }
    return String(decoding: response, as: UTF8.self)
}

/// A socket listening on a free loopback port, standing in for another program on the host.
func listeningSocket() throws -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = loopback(0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard ok else { throw TestSupportError("listen on 127.0.0.1: errno \(errno)") }
    return (fd, UInt16(bigEndian: address.sin_port))
}

private func loopback(_ port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    return address
}

/// Polls `condition` every 50 ms for up to 5 s.
func waitFor(_ condition: () -> Bool) async throws -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: .seconds(5))
    while clock.now < deadline {
        if condition() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return condition()
}

@Suite(.serialized)
struct DatagramPortTests {
    @Test func publishedUDPPortRelaysBothWays() async throws {
        try await withNetworks { networks, suffix in
            let network = try networks.create("udp-\(suffix)")
            let sandbox = try networks.prepareSandbox(
                containerID: "udp-\(suffix)", hostname: "udp", mode: .bridge([network.name]))
            let forwarder = PortForwarder(
                try PortMapping(parsing: "127.0.0.1::9000/udp"),
                containerAddress: try #require(sandbox.endpoints.first).ipv4Address,
                netnsPath: try #require(sandbox.netnsPath))
            let port = try forwarder.start()
            defer { forwarder.stop() }
            let server = try await startUDPServer(in: sandbox, forever: false)
            let fd = udpClient()
            defer { close(fd) }
            var reply = ""
            // Pings until python has bound its port (seconds on a loaded machine), 30 s at most.
            for _ in 0..<150 where reply.isEmpty {
                send(Array("ping\n".utf8), from: fd, toLoopbackPort: port)
                var buffer = [UInt8](repeating: 0, count: 512)
                let count = recv(fd, &buffer, buffer.count, 0)
                if count > 0 { reply = String(decoding: buffer[0..<count], as: UTF8.self) }
            }
            // A server no ping reached would wait for one forever, and its output with it.
            if reply.isEmpty { try? server.signal(.kill) }
            let output = await server.standardOutput?.collect(limit: 1 << 20).text ?? ""
            _ = try await server.wait()
            #expect(reply == "pong:ping\n")
            #expect(output == "ping\n")
        }
    }
}

@Suite(.serialized)
struct DatagramFloodTests {
    /// Descriptors this process holds.
    func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0 }

    /// A UDP socket on 127.0.0.1 with a port of its own, for one source address of a flood.
    func sendFromNewPort(_ bytes: [UInt8], to port: UInt16) -> Int32 {
        let fd = udpClient()
        send(bytes, from: fd, toLoopbackPort: port)
        return fd
    }

    /// Datagrams from many source ports open at most the cap of sessions (sockets) in the
    /// relay; the least recently used go, and a new client is still served.
    @Test func aFloodFromManySourcePortsKeepsTheRelaysSocketsBounded() async throws {
        try await withNetworks { networks, suffix in
            let network = try networks.create("flood-\(suffix)")
            let sandbox = try networks.prepareSandbox(
                containerID: "flood-\(suffix)", hostname: "flood", mode: .bridge([network.name]))
            let cap = 32
            let forwarder = PortForwarder(
                try PortMapping(parsing: "127.0.0.1::9000/udp"),
                containerAddress: try #require(sandbox.endpoints.first).ipv4Address,
                netnsPath: try #require(sandbox.netnsPath), maxDatagramSessions: cap)
            let port = try forwarder.start()
            defer { forwarder.stop() }
            let server = try await startUDPServer(in: sandbox, forever: true)
            try await Task.sleep(for: .milliseconds(300))  // the server binds

            let before = openDescriptors()
            let flood = 300
            let clients = (0..<flood).map { _ in sendFromNewPort(Array("flood".utf8), to: port) }
            defer { clients.forEach { close($0) } }
            // The relay binds its sockets asynchronously: watch the count for a while.
            var peak = 0
            for _ in 0..<20 {
                peak = max(peak, openDescriptors() - before - flood)
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(peak <= cap + 8, "the relay held \(peak) sockets for \(flood) clients (cap \(cap))")

            // A client after the flood still gets its reply: at once here, after the relay has
            // worked through the flood under emulation (the 6.1 guest), so up to a minute.
            var reply = ""
            for _ in 0..<300 where reply.isEmpty {
                let fd = sendFromNewPort(Array("ping".utf8), to: port)
                var buffer = [UInt8](repeating: 0, count: 512)
                let count = recv(fd, &buffer, buffer.count, 0)
                if count > 0 { reply = String(decoding: buffer[0..<count], as: UTF8.self) }
                close(fd)
            }
            #expect(reply == "pong:ping")
            await stop(server)
        }
    }
}

/// A UDP socket with a 200 ms receive timeout; it gets a port of its own when it first sends.
func udpClient() -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// Sends one datagram from `fd` to `127.0.0.1:port`.
func send(_ bytes: [UInt8], from fd: Int32, toLoopbackPort port: UInt16) {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
}

/// A UDP server on port 9000 of the sandbox that answers `pong:<datagram>`: once, printing
/// the datagram on its stdout, or `forever`. Debian's busybox has no UDP server applet: the
/// host's python3 answers, run in the sandbox's namespace (no rootfs of its own).
func startUDPServer(in sandbox: Sandbox, forever: Bool) async throws -> ProcessHandle {
    let bind = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 9000))"
    let answer =
        forever
        ? "\nwhile True:\n    d, a = s.recvfrom(512); s.sendto(b'pong:' + d, a)"
        : "; d, a = s.recvfrom(512); print(d.decode(), end='', flush=True); s.sendto(b'pong:' + d, a)"
    var spec = ProcessSpec(rootfs: nil, arguments: ["/usr/bin/python3", "-c", bind + answer])
    sandbox.configure(&spec)
    return try await ProcessHandle.spawn(spec)
}
