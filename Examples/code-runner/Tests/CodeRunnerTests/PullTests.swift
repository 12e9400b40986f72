import AsyncHTTPClient
import CodeRunner
import Containers
import Foundation
import Testing

/// `POST /v1/images/pull` against a real registry: Debian's `docker-registry` on 127.0.0.1,
/// holding the test image pushed there by Berth.
@Suite(.serialized)
struct PullTests {
    /// A `docker-registry` on a free loopback port with storage in a directory of its own.
    final class Registry {
        let host: String
        let directory: String
        let process = Process()

        init() async throws {
            directory = FileManager.default.temporaryDirectory.path + "/code-runner-registry-\(getpid())"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let port = try Self.freePort()
            host = "127.0.0.1:\(port)"
            let config = """
                version: 0.1
                log:
                  level: error
                storage:
                  filesystem:
                    rootdirectory: \(directory)/data
                http:
                  addr: \(host)

                """
            try Data(config.utf8).write(to: URL(fileURLWithPath: directory + "/config.yml"))
            process.executableURL = URL(fileURLWithPath: "/usr/bin/docker-registry")
            process.arguments = ["serve", directory + "/config.yml"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(15)
            while Date() < deadline, process.isRunning {
                if let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "http://\(host)/v2/"), timeout: .seconds(2)),
                   response.status == .ok { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            stop()
            throw RegistryError()
        }

        struct RegistryError: Error {}

        func stop() {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
            try? FileManager.default.removeItem(atPath: directory)
        }

        /// A loopback port nothing listens on (the kernel's choice for a socket bound to 0).
        static func freePort() throws -> Int {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else { throw RegistryError() }
            return Int(UInt16(bigEndian: address.sin_port))
        }
    }

    @Test func aPullFromTheConfiguredRegistryMakesTheImageRunnable() async throws {
        let registry = try await Registry()
        defer { registry.stop() }
        let runtime = try await TestRuntime.runtime()
        try await runtime.images.push("busybox", to: try ImageReference(parsing: registry.host + "/code-runner/busybox:pulled"))
        try await withServer({ $0.registry = registry.host }) { client, _ in
            let pulled = try await client.post("/v1/images/pull", json: #"{"image": "code-runner/busybox:pulled"}"#)
            #expect(pulled.status == 200, "\(pulled.text)")
            #expect(pulled.text.contains("sha256:"), "\(pulled.text)")
            struct Images: Decodable { struct Listed: Decodable { var name: String? }; var images: [Listed] }
            let images = try await client.get("/v1/images")
            #expect(try images.decode(Images.self).images.contains { $0.name?.hasSuffix("/code-runner/busybox:pulled") == true
                && $0.name?.hasPrefix(registry.host) == false }, "\(images.text)")
            let result = try await client.result(RunRequest(image: "code-runner/busybox:pulled", command: ["echo", "from the registry"]))
            #expect(result.exitCode == 0 && result.stdout == "from the registry\n", "\(result)")
            // An image the registry does not have: 502, saying which and where.
            let missing = try await client.post("/v1/images/pull", json: #"{"image": "code-runner/missing:1"}"#)
            #expect(missing.status == 502 && missing.errorCode == "pull_failed", "\(missing.status): \(missing.text)")
            #expect(missing.text.contains(registry.host), "\(missing.text)")
            // Not a reference at all: 400.
            let invalid = try await client.post("/v1/images/pull", json: #"{"image": "UPPER CASE"}"#)
            #expect(invalid.status == 400 && invalid.errorCode == "invalid_request", "\(invalid.status): \(invalid.text)")
        }
        for name in ["code-runner/busybox:pulled", registry.host + "/code-runner/busybox:pulled"] { _ = try runtime.images.remove(name) }
    }
}
