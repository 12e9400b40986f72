import Foundation
import Images
import Testing
import TestSupport

/// A fresh store and a local registry holding the four-layer busybox image, pushed by Berth.
struct RegistryFixture {
    let registry: RegistryServer
    let scratch: TemporaryDirectory
    let reference: ImageReference

    init(
        tls: Bool = false, auth: RegistryServer.Auth = .none, dataSize: Int = 4 << 20,
        client: (RegistryServer) -> RegistryClient.Configuration = { _ in .init() }
    ) async throws {
        registry = try RegistryServer(tls: tls, auth: auth)
        scratch = try TemporaryDirectory(prefix: "images")
        reference = try ImageReference(parsing: "\(registry.host)/test/busybox:v1")
        let source = try ImageStore(root: scratch.path + "/source", registry: RegistryClient(configuration: client(registry)))
        try ImageFixtures.writeLayout([try ImageFixtures.busyboxImage(dataSize: dataSize)], at: scratch.path + "/layout", refName: reference.description)
        try await source.importLayout(at: scratch.path + "/layout")
        try await source.push(reference.description)
    }

    func store(_ name: String, configuration: RegistryClient.Configuration = .init()) throws -> ImageStore {
        try ImageStore(root: scratch.path + "/" + name, registry: RegistryClient(configuration: configuration))
    }

    func stop() throws {
        try registry.stop()
        try scratch.remove()
    }
}

/// The OCI layout oracle from the workplace's shared tools, which sit beside the checkout
/// (`<checkout>/../shared`) on developer machines and in CI alike.
let layoutChecker = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("shared/tools/oci_layout_check.py").path

func layoutCheck(_ directory: String) throws -> (ok: Bool, output: String) {
    let result = try run(["python3", layoutChecker, directory])
    return (result.status == 0, result.output)
}

func run(_ argv: [String]) throws -> (status: Int32, output: String) { try runProgram(argv) }

@Suite(.serialized)
struct RegistryTests {
    @Test func pullVerifiesAndASecondPullDownloadsNothing() async throws {
        let fixture = try await RegistryFixture()
        let store = try fixture.store("pull")
        let image = try await store.pull(fixture.reference, platform: try Platform(parsing: "linux/amd64"))
        #expect(image.layers.count == 4)
        #expect(image.config.config?.cmd == ["/bin/sh"])
        let check = try layoutCheck(store.content.root)
        #expect(check.ok, "\(check.output)")
        let skopeo = try run(["skopeo", "inspect", "oci:\(store.content.root):\(fixture.reference)"])
        #expect(skopeo.status == 0, "\(skopeo.output)")
        #expect(skopeo.output.contains(image.digest.description))

        // Taken after the first pull and the external checks: Foundation's Process keeps a
        // socketpair open, and the HTTP stack's one-time set-up is not a leak.
        let before = LeakSnapshot.take()
        let (events, sink) = AsyncStream.makeStream(of: TransferProgress.self)
        let again = try await store.pull(fixture.reference, platform: try Platform(parsing: "linux/amd64"), progress: sink)
        var kinds: [TransferProgress.Event] = []
        for await event in events { kinds.append(event.event) }
        #expect(again.digest == image.digest)
        #expect(kinds.count == 5 && kinds.allSatisfy { $0 == .skipped }, "\(kinds)")
        // Only this process's fds: cgroups made by other suites running concurrently are not ours.
        let leaks = await LeakSnapshot.expectClean(since: before).filter { $0.hasPrefix("fd ") }
        #expect(leaks.isEmpty, "\(leaks)")
        try fixture.stop()
    }

    @Test func pushThenPullKeepsTheDigestAndTagRemoveAndGCWork() async throws {
        let fixture = try await RegistryFixture()
        let store = try fixture.store("roundtrip")
        let pulled = try await store.pull(fixture.reference, platform: try Platform(parsing: "linux/amd64"))
        let copy = try ImageReference(parsing: "\(fixture.registry.host)/other/copy:v2")
        let pushed = try await store.push(fixture.reference.description, to: copy, mountFrom: "test/busybox")
        #expect(pushed.digest == pulled.digest)
        #expect(try await store.registry.resolve(copy).digest == pulled.digest)

        try store.tag(fixture.reference.description, as: copy)
        #expect(try store.images().count == 2)
        #expect(throws: ImageError.self) { try store.remove(copy.description, isInUse: { _ in true }) }
        try store.remove(copy.description)
        #expect(try await store.collectGarbage().isEmpty)
        try store.remove(fixture.reference.description)
        #expect(try await store.collectGarbage().count == 6)
        #expect(store.content.blobs().isEmpty)
        try fixture.stop()
    }

    @Test func twoStoresOnOneRootPullConcurrently() async throws {
        // Two ImageStore instances open the root independently, so their flock locks exclude each
        // other exactly as two processes' would (flock belongs to the open file description).
        let fixture = try await RegistryFixture()
        let first = try fixture.store("shared")
        let second = try fixture.store("shared")
        let platform = try Platform(parsing: "linux/amd64")
        async let a = first.pull(fixture.reference, platform: platform)
        async let b = second.pull(fixture.reference, platform: platform)
        let (x, y) = try await (a, b)
        #expect(x.digest == y.digest)
        #expect(try layoutCheck(first.content.root).ok)
        try fixture.stop()
    }

    @Test func multiPlatformIndexSelectsTheManifestAndAMissingPlatformIsAClearError() async throws {
        let registry = try RegistryServer()
        let scratch = try TemporaryDirectory(prefix: "images")
        let reference = try ImageReference(parsing: "\(registry.host)/multi/busybox:v1")
        try ImageFixtures.writeLayout(
            [try ImageFixtures.busyboxImage(dataSize: 1024), try ImageFixtures.busyboxImage(dataSize: 2048, platform: "linux/arm64/v8")],
            at: scratch.path + "/layout", refName: "v1")
        // Push the multi-platform layout with skopeo, since Berth's push takes single images.
        let copy = try run(["skopeo", "copy", "--all", "--dest-tls-verify=false", "oci:\(scratch.path)/layout:v1", "docker://\(reference)"])
        #expect(copy.status == 0, "\(copy.output)")
        let store = try ImageStore(root: scratch.path + "/store")
        let arm = try await store.pull(reference, platform: try Platform(parsing: "linux/arm64"))
        #expect(arm.config.architecture == "arm64")
        await #expect {
            try await store.pull(reference, platform: try Platform(parsing: "linux/s390x"))
        } throws: { error in
            (error as? ImageError)?.code == .platformNotFound && "\(error)".contains("linux/s390x")
        }
        try registry.stop()
        try scratch.remove()
    }

    @Test func tlsRegistryWithATestCA() async throws {
        var configuration = RegistryClient.Configuration()
        let fixture = try await RegistryFixture(tls: true) { registry in
            var c = RegistryClient.Configuration()
            c.certificateAuthorities = [registry.caCertificate ?? ""]
            return c
        }
        configuration.certificateAuthorities = [fixture.registry.caCertificate ?? ""]
        let store = try fixture.store("tls", configuration: configuration)
        let image = try await store.pull(fixture.reference, platform: try Platform(parsing: "linux/amd64"))
        #expect(image.layers.count == 4)
        // Without the CA the registry's certificate is not trusted.
        await #expect(throws: ImageError.self) { try await fixture.store("untrusted").registry.ping(fixture.registry.host) }
        try fixture.stop()
    }

    @Test func basicAuthWrongPasswordConfigJSONAndCredentialHelper() async throws {
        let good = RegistryCredentials(username: "berth", password: "s3cret")
        let fixture = try await RegistryFixture(auth: .basic(username: good.username, password: good.password)) { registry in
            var c = RegistryClient.Configuration()
            c.credentials = [registry.host: good]
            return c
        }
        let host = fixture.registry.host
        var wrong = RegistryClient.Configuration()
        wrong.credentials = [host: RegistryCredentials(username: "berth", password: "nope")]
        await #expect {
            try await fixture.store("wrong", configuration: wrong).pull(fixture.reference)
        } throws: { error in
            (error as? ImageError)?.code == .unauthorized && "\(error)".contains(host)
        }

        // config.json with a base64 auths entry.
        let dir = fixture.scratch.path + "/docker"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let auth = Data("berth:s3cret".utf8).base64EncodedString()
        try Data(#"{"auths":{"\#(host)":{"auth":"\#(auth)"}}}"#.utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        var fromFile = RegistryClient.Configuration()
        fromFile.dockerConfig = try DockerConfig.standard(environment: ["DOCKER_CONFIG": dir])
        let platform = try Platform(parsing: "linux/amd64")
        _ = try await fixture.store("file", configuration: fromFile).pull(fixture.reference, platform: platform)

        // credHelpers: a docker-credential-<name> script on PATH.
        let helper = dir + "/docker-credential-berthtest"
        try Data("#!/bin/sh\nread server\necho '{\"ServerURL\":\"'$server'\",\"Username\":\"berth\",\"Secret\":\"s3cret\"}'\n".utf8)
            .write(to: URL(fileURLWithPath: helper))
        chmod(helper, 0o755)
        setenv("PATH", dir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"), 1)
        try Data(#"{"credHelpers":{"\#(host)":"berthtest"}}"#.utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        var fromHelper = RegistryClient.Configuration()
        fromHelper.dockerConfig = try DockerConfig(path: dir + "/config.json")
        _ = try await fixture.store("helper", configuration: fromHelper).pull(fixture.reference, platform: platform)
        try fixture.stop()
    }
}

extension RegistryTests {
    /// Basic credentials go to a plain-http token realm only on the host of a registry reached
    /// over plain http: a realm on another host (`127.0.0.2` for a registry on `127.0.0.1`), or
    /// one beside an HTTPS registry, gets an anonymous token request, and what that token does
    /// not cover fails naming the realm.
    @Test func credentialsAreNotSentToAPlainHTTPRealmOnAnotherHost() async throws {
        let owner = RegistryCredentials(username: "berth", password: "s3cret")
        let grants = ["berth": ["test/busybox": ["pull"]]]

        let foreign = try await TokenIssuer(users: ["berth": "s3cret"], grants: grants, host: "127.0.0.2")
        let registry = try RegistryServer(auth: foreign.registryAuth)
        var configuration = RegistryClient.Configuration()
        configuration.credentials = [registry.host: owner]
        let client = RegistryClient(configuration: configuration)
        try await client.ping(registry.host)  // an anonymous token opens /v2/
        await #expect {
            try await client.resolve(try ImageReference(parsing: "\(registry.host)/test/busybox:v1"))
        } throws: { error in
            (error as? ImageError)?.code == .unauthorized && "\(error)".contains(foreign.realm)
                && "\(error)".contains("withheld")
        }
        #expect(!foreign.authorizations.isEmpty)
        #expect(foreign.authorizations.allSatisfy { $0 == nil }, "\(foreign.authorizations)")
        try registry.stop()
        try await foreign.stop()

        // The same realm on the registry's own loopback host gets them.
        let own = try await TokenIssuer(users: ["berth": "s3cret"], grants: grants)
        let ownRegistry = try RegistryServer(auth: own.registryAuth)
        var ownConfiguration = RegistryClient.Configuration()
        ownConfiguration.credentials = [ownRegistry.host: owner]
        try await RegistryClient(configuration: ownConfiguration).ping(ownRegistry.host)
        #expect(own.authorizations.contains { $0?.hasPrefix("Basic ") == true }, "\(own.authorizations)")
        try ownRegistry.stop()
        try await own.stop()

        // A registry reached over HTTPS does not give them away to a plain-http realm on its
        // own host: that would downgrade the password to clear text.
        let downgrade = try await TokenIssuer(users: ["berth": "s3cret"], grants: grants)
        let tlsRegistry = try RegistryServer(tls: true, auth: downgrade.registryAuth)
        var tlsConfiguration = RegistryClient.Configuration()
        tlsConfiguration.certificateAuthorities = [tlsRegistry.caCertificate ?? ""]
        tlsConfiguration.credentials = [tlsRegistry.host: owner]
        try await RegistryClient(configuration: tlsConfiguration).ping(tlsRegistry.host)
        #expect(!downgrade.authorizations.isEmpty)
        #expect(downgrade.authorizations.allSatisfy { $0 == nil }, "\(downgrade.authorizations)")
        try tlsRegistry.stop()
        try await downgrade.stop()
    }
}
