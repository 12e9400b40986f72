import ContainerKernel
import Glibc
import Networking
import Testing
import TestSupport

@Suite(.serialized)
struct BridgeNetworkTests {
    @Test func containersOnOneNetworkReachEachOtherByName() async throws {
        try await withNetworks { networks, suffix in
            let network = try networks.create("web-\(suffix)")
            let server = try networks.prepareSandbox(containerID: "web-\(suffix)", hostname: "web", mode: .bridge([network.name]), aliases: ["www"])
            let client = try networks.prepareSandbox(containerID: "client-\(suffix)", hostname: "client", mode: .bridge([network.name]))
            #expect(server.endpoints.first?.ipv4Address == network.subnet.address(at: 2))
            let root = try webRoot("hello from web\n")
            defer { try? root.remove() }
            let httpd = try await startHTTPServer(in: server, root: root.path)
            let fetch = try await run(["/bin/sh", "-c", "for i in $(seq 50); do wget -q -O - http://www/index.html && exit 0; sleep 0.1; done; exit 1"], in: client)
            await stop(httpd)
            #expect(fetch.status == .exited(0), "\(fetch.output)")
            #expect(fetch.output == "hello from web\n")
            let hosts = try networks.hostsFile(for: client.containerID)
            #expect(hosts.contains("\(try #require(server.endpoints.first).ipv4Address)\tweb www"))
        }
    }
}
