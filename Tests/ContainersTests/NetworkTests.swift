import Containers
import ContainerKernel
import Glibc
import Networking
import Testing
import TestSupport

/// Containers on bridge networks, through the Containers API (the Networking target's own
/// tests cover the network layer in depth).
@Suite(.serialized)
struct ContainerNetworkTests {
    @Test func containersOnOneNetworkReachEachOtherByNameAndPublishPorts() async throws {
        let runtime = try await TestRuntime.shared()
        let network = "ctr-net-\(getpid())"
        _ = try runtime.networks.create(network)
        defer { try? runtime.networks.remove(network) }
        let anyPort = try PortMapping(parsing: "127.0.0.1:0:80")
        let server = try await runtime.run(busybox(["/bin/sh", "-c", "echo served > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]) {
            $0.name = "web-\(getpid())"
            $0.network = .bridge([network])
            $0.ports = [anyPort]
        })
        let client = try await runtime.run(busybox(["/bin/sh", "-c", "sleep 0.3; wget -q -O - http://web-\(getpid())/index.html"]) {
            $0.network = .bridge([network])
        })
        #expect(try await client.wait() == .exited(0))
        let fetched = await collect(client.logs()).map(\.log).joined()
        #expect(fetched == "served\n")
        #expect(server.state.addresses[network] != nil)

        let published = try #require(server.state.publishedPorts.first)
        #expect(published.hostPort != 0)
        let viaHost = try await runToEnd(ProcessSpec(rootfs: nil, arguments: [
            "/bin/busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:\(published.hostPort)/index.html",
        ]).withHostNetwork())
        #expect(viaHost == "served\n")

        // A second container asking for the same host port fails before it starts.
        let samePort = try PortMapping(parsing: "127.0.0.1:\(published.hostPort):80")
        let clash = try await runtime.create(busybox(["/bin/true"]) {
            $0.network = .bridge([network])
            $0.ports = [samePort]
        })
        await #expect(throws: ContainerError.self) { try await clash.start() }
        #expect(clash.state.status == .created)
        for container in [client, clash] { try await container.remove(force: true) }
        try await server.remove(force: true)
    }
}

extension ProcessSpec {
    /// The host's own network, no seccomp: a helper process that is a client of the host.
    func withHostNetwork() -> ProcessSpec {
        var spec = self
        spec.namespaces.remove(.network)
        spec.seccomp = .unconfined
        return spec
    }
}

/// Runs a process and returns its stdout.
func runToEnd(_ spec: ProcessSpec) async throws -> String {
    let process = try await ProcessHandle.spawn(spec)
    let output = await process.standardOutput?.collect(limit: 1 << 20).text ?? ""
    _ = try await process.wait()
    return output
}
