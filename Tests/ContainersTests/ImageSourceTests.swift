import Containers
import ContainerKernel
import Images
import Testing
import TestSupport

/// Where a container's image comes from: pulled on demand from a registry (the real
/// docker-registry on loopback), or the embedded default image built offline.
@Suite(.serialized)
struct ImageSourceTests {
    @Test func runPullsAMissingImageFromTheLocalRegistry() async throws {
        let registry = try RegistryServer()
        defer { try? registry.stop() }
        let runtime = try await TestRuntime.shared()
        let reference = try ImageReference(parsing: "\(registry.host)/berth-test/busybox:latest")
        try runtime.images.tag("busybox:latest", as: reference)
        try await runtime.images.push(reference.description)

        // A fresh root, as on a new machine: nothing there until run pulls it.
        let root = try TemporaryDirectory(prefix: "pulling")
        defer { try? root.remove() }
        let fresh = try ContainerRuntime(root: root.path)
        var never = ContainerConfiguration(image: reference.description, command: ["true"])
        never.pullPolicy = .never
        await #expect(throws: ContainerError.self) { try await fresh.run(never) }
        let container = try await fresh.run(ContainerConfiguration(image: reference.description, command: ["/bin/probe", "exit", "5"]))
        #expect(try await container.wait() == .exited(5))
        #expect(container.imageID == (try runtime.images.image("busybox:latest")).id.description)
        try await container.remove()
    }

    @Test func runUsesTheEmbeddedDefaultImage() async throws {
        let root = try TemporaryDirectory(prefix: "default-image")
        defer { try? root.remove() }
        let runtime = try ContainerRuntime(root: root.path)
        try await runtime.images.makeBusyboxImage()
        let echo = try await runtime.run(ContainerConfiguration(image: "busybox", command: ["sh", "-c", "echo hi from $(hostname)"]))
        #expect(try await echo.wait() == .exited(0))
        var lines: [String] = []
        for await entry in echo.logs() { lines.append(entry.log) }
        #expect(lines == ["hi from \(echo.id.prefix(12))\n"])
        let killed = try await runtime.run(ContainerConfiguration(image: "busybox", command: ["sleep", "60"]))
        try killed.kill(.kill)
        #expect(try await killed.wait() == .signaled(.kill, coreDumped: false))
        for container in [echo, killed] { try await container.remove() }
    }
}
