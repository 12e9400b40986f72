import ContainerKernel
import Containers
import FoundationEssentials
import Testing

/// `RecordEncoder` writes the runtime's records (`container.json`, `volume.json`) in place of a
/// `JSONEncoder` with `.sortedKeys` and `.iso8601` dates: the same bytes, for every kind of
/// value a record holds.
@Suite
struct RecordEncoderTests {
    /// What a record holds around a configuration: a date, numbers of both float types, an
    /// absent optional, an empty object.
    struct Record: Codable, Equatable {
        struct Empty: Codable, Equatable {}
        var created: Date
        var configuration: ContainerConfiguration
        var ratio: Double
        var whole: Double
        var small: Float
        var missing: String?
        var empty: Empty
        var nested: [[String: [Int64]]]

        /// Equal when they encode to the same bytes (`ContainerConfiguration` is not `Equatable`).
        static func == (a: Record, b: Record) -> Bool {
            (try? RecordEncoder.encode(a)) == (try? RecordEncoder.encode(b))
        }
    }

    func everyField() throws -> Record {
        var configuration = ContainerConfiguration(image: "127.0.0.1:5000/busy/box:1.36", command: ["/bin/sh", "-c", "echo \"hi\"\n\t\\ \u{1}\u{1F} é ✓"])
        configuration.entrypoint = []
        configuration.environment = ["A=1", "PATH=/usr/bin:/bin"]
        configuration.workingDirectory = "/work dir"
        configuration.user = "1000:1000"
        configuration.hostname = "host"
        configuration.labels = ["b": "2", "a": "1", "B": "3", "a.b/c": "4", "é": "5", "": "empty"]
        configuration.name = "name"
        configuration.mounts = [
            .bind(source: "/srv", target: "/data", readOnly: true),
            .tmpfs(target: "/run", options: "size=64m"),
            .tmpfs(target: "/tmp", options: nil),
            .volume(name: "vol", target: "/var/lib/x", readOnly: false),
        ]
        configuration.readOnlyRootfs = true
        configuration.resources.memoryLimit = 32 << 20
        configuration.resources.cpuShares = 512
        configuration.resources.cpuQuota = -1
        configuration.resources.cpusetCpus = "0-1"
        configuration.capabilitiesAdded = try Capability.parsing(["NET_ADMIN", "SYS_PTRACE"])
        configuration.capabilitiesDropped = try Capability.parsing(["MKNOD"])
        configuration.seccomp = .profile(json: "{\"defaultAction\":\"SCMP_ACT_ALLOW\"}")
        configuration.noNewPrivileges = true
        configuration.resourceLimits = [ResourceLimit(.openFiles, soft: 1024, hard: UInt64.max)]
        configuration.sysctls = ["net.ipv4.ip_unprivileged_port_start": "0"]
        configuration.oomScoreAdjustment = -500
        configuration.userNamespace = UserNamespaceRemapping(hostID: 100_000)
        configuration.stopSignal = "SIGINT"
        configuration.stopTimeout = 3
        configuration.network = .bridge(["front", "back"])
        configuration.networkAliases = ["web"]
        configuration.ports = [PortMapping(hostPort: 8080, containerPort: 80), PortMapping(hostPort: 0, containerPort: 53, transport: .udp)]
        configuration.restartPolicy = .onFailure(maximumRetries: 3)
        configuration.healthcheck = HealthcheckConfiguration(command: ["true"], interval: .milliseconds(1500))
        configuration.pullPolicy = .never
        configuration.initProcess = true
        configuration.lifetime = .detached
        configuration.timeout = .seconds(5)
        return Record(
            created: Date(timeIntervalSince1970: 1_764_786_650.25), configuration: configuration,
            ratio: 0.1, whole: 2, small: 1.5, missing: nil, empty: Record.Empty(),
            nested: [["k": [1, -2, Int64.max]], [:]])
    }

    @Test func writesWhatJSONEncoderWrites() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        for record in [try everyField(), Record(
            created: Date(timeIntervalSince1970: 0), configuration: ContainerConfiguration(image: "busybox"),
            ratio: -0.5, whole: 1e300, small: 0, missing: "here", empty: Record.Empty(), nested: [])]
        {
            let expected = String(decoding: try encoder.encode(record), as: UTF8.self)
            let written = String(decoding: try RecordEncoder.encode(record), as: UTF8.self)
            #expect(written == expected)
        }
    }

    @Test func readsBackWithJSONDecoder() throws {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        var record = try everyField()
        // A set of one, so that both records list it in the same order.
        record.configuration.capabilitiesAdded = try Capability.parsing(["NET_ADMIN"])
        let decoded = try decoder.decode(Record.self, from: Data(try RecordEncoder.encode(record)))
        #expect(decoded == record)
    }

    @Test func refusesNonFiniteNumbers() throws {
        var record = try everyField()
        record.ratio = .nan
        #expect(throws: EncodingError.self) { try RecordEncoder.encode(record) }
    }
}
