import Foundation
import Images
import Testing
import TestSupport

/// Pulls through ``FaultProxy`` (dropped connections, 5xx/429, corruption) and against a registry
/// that uses token auth with ``TokenIssuer``.
@Suite(.serialized)
struct FaultTests {
    /// Quick retries, so refused requests do not slow the suite down.
    static var fastRetries: RegistryClient.Configuration {
        var configuration = RegistryClient.Configuration()
        configuration.retry.initialDelay = .milliseconds(10)
        configuration.retry.maxDelay = .milliseconds(100)
        return configuration
    }

    /// The fixture image's largest layer: the one faults are aimed at.
    static func largestLayer(_ fixture: RegistryFixture) throws -> Descriptor {
        let source = try ImageStore(root: fixture.scratch.path + "/source")
        let layers = try source.image(fixture.reference.description).layers
        return try #require(layers.max { $0.size < $1.size })
    }

    @Test func aConnectionDroppedAt60PercentResumesAndFetchesUnder110Percent() async throws {
        // The proxy paces the blob like a 64 MiB/s link. Unpaced, loopback fills the client's
        // socket buffer (tcp_rmem allows 32 MiB here) faster than a debug build consumes it, and
        // on EOF SwiftNIO reads that whole buffer into AsyncHTTPClient, which fails the body
        // stream and drops the parts not yet handed to Berth: those bytes are fetched again.
        let fixture = try await RegistryFixture(dataSize: 16 << 20)
        let layer = try Self.largestLayer(fixture)
        let proxy = try await FaultProxy(
            upstream: fixture.registry.host,
            faults: .init(dropAfter: Int(layer.size * 6 / 10), bytesPerSecond: 64 << 20, matching: layer.digest.description))
        let store = try fixture.store("resume", configuration: Self.fastRetries)
        let reference = try ImageReference(parsing: "\(proxy.host)/test/busybox:v1")
        let image = try await store.pull(reference, platform: try Platform(parsing: "linux/amd64"))

        #expect(image.layers.contains(layer))
        let fetched = proxy.bodyBytes(matching: layer.digest.description)
        #expect(fetched >= Int(layer.size) && Double(fetched) < 1.1 * Double(layer.size), "fetched \(fetched) of \(layer.size)")
        #expect(proxy.requests.filter { $0.contains(layer.digest.description) }.count == 2)
        #expect(try layoutCheck(store.content.root).ok)
        try await proxy.stop()
        try fixture.stop()
    }

    @Test(arguments: [500, 503, 429])
    func refusedRequestsAreRetried(status: Int) async throws {
        let fixture = try await RegistryFixture()
        let proxy = try await FaultProxy(upstream: fixture.registry.host, faults: .init(failFirst: 3, failureStatus: status, matching: "/v2/"))
        let store = try fixture.store("retry", configuration: Self.fastRetries)
        let image = try await store.pull(try ImageReference(parsing: "\(proxy.host)/test/busybox:v1"), platform: try Platform(parsing: "linux/amd64"))
        #expect(image.layers.count == 4)
        #expect(try layoutCheck(store.content.root).ok)
        try await proxy.stop()
        try fixture.stop()
    }

    @Test func aSlowRegistryIsWaitedFor() async throws {
        let fixture = try await RegistryFixture()
        let proxy = try await FaultProxy(upstream: fixture.registry.host, faults: .init(delay: .milliseconds(200)))
        let store = try fixture.store("slow")
        let image = try await store.pull(try ImageReference(parsing: "\(proxy.host)/test/busybox:v1"), platform: try Platform(parsing: "linux/amd64"))
        #expect(image.layers.count == 4)
        try await proxy.stop()
        try fixture.stop()
    }

    @Test func aCorruptingProxyIsADigestMismatchThatLeavesNoTrace() async throws {
        let fixture = try await RegistryFixture()
        let layer = try Self.largestLayer(fixture)
        let proxy = try await FaultProxy(upstream: fixture.registry.host, faults: .init(corruptAt: 1000, matching: layer.digest.description))
        let store = try fixture.store("corrupt", configuration: Self.fastRetries)
        let reference = try ImageReference(parsing: "\(proxy.host)/test/busybox:v1")
        let platform = try Platform(parsing: "linux/amd64")
        await #expect {
            try await store.pull(reference, platform: platform)
        } throws: { error in
            (error as? ImageError)?.code == .digestMismatch && "\(error)".contains(layer.digest.description)
        }
        #expect(!store.content.contains(layer.digest))
        let ingest = store.content.root + "/.berth/ingest/sha256-" + layer.digest.encoded
        #expect(!FileManager.default.fileExists(atPath: ingest), "the bad bytes stayed at \(ingest)")
        #expect(try store.content.entries().isEmpty)
        let check = try layoutCheck(store.content.root)
        #expect(check.ok, "\(check.output)")

        proxy.faults = .init()
        let image = try await store.pull(reference, platform: platform)
        #expect(image.layers.contains(layer))
        #expect(try layoutCheck(store.content.root).ok)
        try await proxy.stop()
        try fixture.stop()
    }

    @Test func aPullKilledMidBlobLeavesAStoreThatVerifiesAndTheNextPullResumes() async throws {
        let fixture = try await RegistryFixture()
        let layer = try Self.largestLayer(fixture)
        let stall = Int(layer.size / 2)
        let proxy = try await FaultProxy(upstream: fixture.registry.host, faults: .init(stallAfter: stall, matching: layer.digest.description))
        let reference = "\(proxy.host)/test/busybox:v1"
        let root = fixture.scratch.path + "/killed"

        // The child is this test bundle running only `pullForAKilledProcessTest`, a real second process.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        child.arguments = ["--testing-library", "swift-testing", "--filter", "pullForAKilledProcessTest"]
        child.environment = ProcessInfo.processInfo.environment.merging(
            [Self.childRootVariable: root, Self.childReferenceVariable: reference]) { $1 }
        child.standardOutput = FileHandle.nullDevice
        child.standardError = FileHandle.nullDevice
        try child.run()
        let partial = root + "/content/.berth/ingest/sha256-" + layer.digest.encoded
        let deadline = ContinuousClock.now + .seconds(60)
        while (try? FileManager.default.attributesOfItem(atPath: partial)[.size] as? Int) ?? 0 < stall, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        #expect(child.terminationReason == .uncaughtSignal)

        let store = try ImageStore(root: root)
        #expect(!store.content.contains(layer.digest))
        #expect(try store.content.entries().isEmpty)
        let check = try layoutCheck(store.content.root)
        #expect(check.ok, "\(check.output)")

        proxy.faults = .init()
        let image = try await store.pull(try ImageReference(parsing: reference), platform: try Platform(parsing: "linux/amd64"))
        #expect(image.layers.contains(layer))
        // The partial blob was resumed: the second pull fetched only what the child had not.
        let fetched = proxy.bodyBytes(matching: layer.digest.description)
        #expect(Double(fetched) < 1.1 * Double(layer.size), "fetched \(fetched) of \(layer.size)")
        #expect(try layoutCheck(store.content.root).ok)
        try await proxy.stop()
        try fixture.stop()
    }

    static let childRootVariable = "BERTH_TEST_PULL_ROOT"
    static let childReferenceVariable = "BERTH_TEST_PULL_REFERENCE"

    /// The second process of the SIGKILL test: enabled only when that test starts it.
    @Test(.enabled(if: ProcessInfo.processInfo.environment[childRootVariable] != nil))
    func pullForAKilledProcessTest() async throws {
        let environment = ProcessInfo.processInfo.environment
        let root = try #require(environment[Self.childRootVariable])
        let reference = try ImageReference(parsing: try #require(environment[Self.childReferenceVariable]))
        _ = try await ImageStore(root: root).pull(reference, platform: try Platform(parsing: "linux/amd64"))
    }

    @Test func tokenAuthGrantsScopesAndRefusesWrongPasswordsAndMissingPermissions() async throws {
        let issuer = try await TokenIssuer(
            users: ["berth": "s3cret", "guest": "guest"], grants: ["berth": ["test/busybox": ["pull", "push"]]])
        let owner = RegistryCredentials(username: "berth", password: "s3cret")
        let fixture = try await RegistryFixture(auth: issuer.registryAuth) { registry in
            var c = RegistryClient.Configuration()
            c.credentials = [registry.host: owner]
            return c
        }
        let host = fixture.registry.host
        let platform = try Platform(parsing: "linux/amd64")
        #expect(issuer.tokens.contains { $0.hasPrefix("berth ") && $0.contains("test/busybox:pull,push") }, "\(issuer.tokens)")

        var good = RegistryClient.Configuration()
        good.credentials = [host: owner]
        let image = try await fixture.store("token", configuration: good).pull(fixture.reference, platform: platform)
        #expect(image.layers.count == 4)

        for (user, password) in [("berth", "wrong"), ("guest", "guest")] {
            var configuration = RegistryClient.Configuration()
            configuration.credentials = [host: RegistryCredentials(username: user, password: password)]
            await #expect {
                try await fixture.store("token-\(user)", configuration: configuration).pull(fixture.reference, platform: platform)
            } throws: { error in
                (error as? ImageError)?.code == .unauthorized && "\(error)".contains(host)
            }
        }
        // The guest got a token, but one that grants nothing on the repository.
        #expect(issuer.tokens.contains("guest test/busybox:"), "\(issuer.tokens)")
        try fixture.stop()
        try await issuer.stop()
    }
}
