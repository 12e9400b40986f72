import ArgumentParser
import ContainerKernel
import Containers
import FoundationEssentials
import Networking

/// The flags `berth run` and `berth create` share: what the container should be, in
/// `docker create`'s terms.
struct ContainerOptions: ParsableArguments {
    @Option(help: "Assign a name to the container.")
    var name: String?

    @Option(name: [.customShort("e"), .customLong("env")], help: "Set an environment variable (KEY=value).")
    var environment: [String] = []

    @Option(name: [.customShort("w"), .customLong("workdir")], help: "Working directory inside the container.")
    var workingDirectory: String?

    @Option(name: [.customShort("u"), .customLong("user")],
            help: "User to run as: UID[:GID] or NAME[:GROUP] from the image's /etc/passwd and /etc/group.")
    var user: String?

    @Option(name: [.customShort("l"), .customLong("label")], help: "Set a label (KEY=value), for `ps --filter label=…`.")
    var labels: [String] = []

    @Option(name: [.customShort("v"), .customLong("volume")],
            help: "Bind-mount a host path or mount a named volume: HOST:CONTAINER[:ro] or NAME:CONTAINER[:ro] (a source not starting with / or . is a volume name; a missing volume is created).")
    var volumes: [String] = []

    @Option(help: "Mount a tmpfs: PATH[:OPTIONS], such as /run:size=64m.")
    var tmpfs: [String] = []

    @Option(name: [.customShort("m"), .customLong("memory")], help: "Memory limit (e.g. 32m, 1g).")
    var memory: String?

    @Option(help: "Number of CPUs (e.g. 0.5).")
    var cpus: Double?

    @Option(name: .customLong("pids-limit"), help: "Maximum number of processes (0 or less: unlimited).")
    var pidsLimit: Int64?

    @Option(name: .customLong("blkio-weight"), help: "Relative block I/O weight, 10 to 1000.")
    var blkioWeight: UInt16?

    @Option(name: .customLong("device-read-bps"), help: "Limit reads from a disk: DEVICE:RATE, such as /dev/sda:1mb.")
    var deviceReadBps: [String] = []

    @Option(name: .customLong("device-write-bps"), help: "Limit writes to a disk: DEVICE:RATE, such as /dev/sda:1mb.")
    var deviceWriteBps: [String] = []

    @Option(name: .customLong("device-read-iops"), help: "Limit read operations on a disk: DEVICE:COUNT per second.")
    var deviceReadIops: [String] = []

    @Option(name: .customLong("device-write-iops"), help: "Limit write operations on a disk: DEVICE:COUNT per second.")
    var deviceWriteIops: [String] = []

    @Option(
        name: .customLong("cap-add"),
        help: """
            Add a Linux capability. SYS_ADMIN is host root on a cgroup v1 host: Berth loads no \
            LSM profile, so the container can mount a cgroup v1 hierarchy and have the host run \
            its release_agent as root. Add it to trusted images only.
            """)
    var capAdd: [String] = []

    @Option(name: .customLong("cap-drop"), help: "Drop a Linux capability (ALL drops every one).")
    var capDrop: [String] = []

    @Flag(name: .customLong("read-only"), help: "Mount the root filesystem read-only.")
    var readOnly = false

    @Flag(
        help: """
            Give every capability, no seccomp filter, no masked paths: the container is host \
            root (with SYS_ADMIN and no LSM profile, on a cgroup v1 host through a cgroup's \
            release_agent). Trusted images only.
            """)
    var privileged = false

    @Option(name: .customLong("security-opt"),
            help: "no-new-privileges, seccomp=unconfined, or seccomp=PROFILE.json (a Docker or OCI profile).")
    var securityOptions: [String] = []

    @Option(name: .customLong("ulimit"),
            help: "Set a resource limit: TYPE=SOFT[:HARD], such as nofile=1024:2048 (Docker's names; -1 or unlimited for none).")
    var ulimits: [String] = []

    @Option(name: .customLong("sysctl"),
            help: "Set a namespaced sysctl: NAME=VALUE, such as net.ipv4.ip_unprivileged_port_start=0 (net.*, IPC, fs.mqueue.*).")
    var sysctls: [String] = []

    @Option(name: .customLong("oom-score-adj"), help: "The OOM killer's bias for the container, -1000 to 1000.")
    var oomScoreAdjustment: Int?

    @Option(name: .customLong("userns-remap"),
            help: "Run in a user namespace whose root is host id HOST_ID: HOST_ID[:SIZE] (SIZE ids mapped, default 65536).")
    var usernsRemap: String?

    @Option(help: "Replace the image's entrypoint (an empty string clears it).")
    var entrypoint: String?

    @Option(help: "Restart policy: no, on-failure[:N], always, unless-stopped. Applies while the berth process that owns the container runs.")
    var restart: String?

    @Option(name: .customLong("health-cmd"), help: "Health check command, run with /bin/sh -c.")
    var healthCommand: String?

    @Option(name: .customLong("health-interval"), help: "Time between health checks (e.g. 30s, 1m30s).")
    var healthInterval: String?

    @Option(name: .customLong("health-timeout"), help: "How long one health check may take.")
    var healthTimeout: String?

    @Option(name: .customLong("health-retries"), help: "Consecutive failures that make the container unhealthy.")
    var healthRetries: Int?

    @Option(name: .customLong("health-start-period"), help: "Time after start during which failures do not count.")
    var healthStartPeriod: String?

    @Option(help: "Network: none (own namespace, loopback only), host, container:NAME (share another container's), bridge (the default bridge network) or the name of a network from `berth network create`.")
    var network = "none"

    @Option(name: .customLong("network-alias"), help: "Another name peers on the container's bridge networks resolve to it (repeatable).")
    var networkAliases: [String] = []

    @Option(name: [.customShort("p"), .customLong("publish")],
            help: "Publish a container port: [hostIP:]hostPort:containerPort[/tcp|udp] (host port 0 picks a free one; repeatable; needs a bridge network).")
    var publish: [String] = []

    @Option(help: "Container host name (default: the first 12 digits of the id).")
    var hostname: String?

    @Option(help: "When to pull the image: always, missing or never.", transform: { text in
        guard let policy = PullPolicy(rawValue: text) else { throw ValidationError("--pull takes always, missing or never") }
        return policy
    })
    var pull: PullPolicy = .missing

    @Option(name: .customLong("stop-signal"), help: "Signal that stops the container (default: the image's, else SIGTERM).")
    var stopSignal: String?

    @Option(name: .customLong("stop-timeout"), help: "Seconds to wait after the stop signal before SIGKILL.")
    var stopTimeout: Int?

    @Flag(help: "Remove the container when it exits.")
    var rm = false

    @Flag(name: [.customShort("i"), .customLong("interactive")], help: "Keep stdin open and pass berth's stdin to it.")
    var interactive = false

    @Flag(name: [.customShort("t"), .customLong("tty")], help: "Allocate a pseudo-terminal.")
    var tty = false

    @Flag(help: "Run an init process as PID 1 that forwards signals and reaps zombies.")
    var `init` = false

    func validate() throws {
        if rm, let restart, restart != "no" {
            throw ValidationError("conflicting options: --restart \(restart) and --rm")
        }
    }

    /// The configuration these flags describe.
    ///
    /// - Parameters:
    ///   - image: The image reference or id.
    ///   - command: Replaces the image's command when not empty.
    func configuration(image: String, command: [String]) throws -> ContainerConfiguration {
        var configuration = ContainerConfiguration(image: image, command: command.isEmpty ? nil : command)
        configuration.name = name
        configuration.environment = environment
        configuration.workingDirectory = workingDirectory
        configuration.user = user
        configuration.labels = try Dictionary(labels.map(keyValue), uniquingKeysWith: { _, last in last })
        configuration.mounts = try mounts
        configuration.readOnlyRootfs = readOnly
        configuration.initProcess = `init`
        configuration.resources = try resources
        configuration.capabilitiesAdded = try Capability.parsing(capAdd)
        configuration.capabilitiesDropped = try Capability.parsing(capDrop)
        configuration.privileged = privileged
        let security = try self.security
        configuration.noNewPrivileges = security.noNewPrivileges
        configuration.seccomp = security.seccomp
        configuration.resourceLimits = try ulimits.map(Self.resourceLimit)
        configuration.sysctls = try Dictionary(sysctls.map(keyValue), uniquingKeysWith: { _, last in last })
        configuration.oomScoreAdjustment = oomScoreAdjustment
        configuration.userNamespace = try usernsRemap.map(Self.userNamespace)
        configuration.entrypoint = entrypoint.map { $0.isEmpty ? [] : [$0] }
        configuration.restartPolicy = try restart.map { try RestartPolicy(parsing: $0) } ?? .no
        configuration.healthcheck = try healthcheck
        configuration.network = try containerNetwork
        configuration.networkAliases = networkAliases
        configuration.ports = try ports
        configuration.hostname = hostname
        configuration.pullPolicy = pull
        configuration.stopSignal = stopSignal
        if let stopTimeout { configuration.stopTimeout = stopTimeout }
        configuration.autoRemove = rm
        configuration.terminal = tty
        configuration.interactive = interactive
        return configuration
    }

    /// Docker's `--ulimit` names and the `RLIMIT_*` numbers they stand for.
    static let resourceNames: [String: Int32] = [
        "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7, "memlock": 8,
        "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13, "rtprio": 14, "rttime": 15,
    ]

    /// One `--ulimit TYPE=SOFT[:HARD]`; a missing hard limit is the soft one, as in Docker.
    static func resourceLimit(_ text: String) throws -> ResourceLimit {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let number = resourceNames[parts[0]] else {
            throw ValidationError("--ulimit takes TYPE=SOFT[:HARD] with TYPE one of \(resourceNames.keys.sorted().joined(separator: ", ")), not \"\(text)\"")
        }
        func value(_ number: Substring) throws -> UInt64 {
            if number == "-1" || number == "unlimited" { return ResourceLimit.unlimited }
            guard let value = UInt64(number) else { throw ValidationError("invalid --ulimit value \"\(number)\" in \"\(text)\"") }
            return value
        }
        let values = parts[1].split(separator: ":", omittingEmptySubsequences: false)
        guard values.count <= 2 else { throw ValidationError("--ulimit takes TYPE=SOFT[:HARD], not \"\(text)\"") }
        let soft = try value(values[0])
        return ResourceLimit(ResourceLimit.Resource(rawValue: number), soft: soft, hard: values.count == 2 ? try value(values[1]) : soft)
    }

    /// `--userns-remap HOST_ID[:SIZE]`.
    static func userNamespace(_ text: String) throws -> UserNamespaceRemapping {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let hostID = UInt32(parts[0]),
              let size = parts.count == 2 ? UInt32(parts[1]) : 65536
        else {
            throw ValidationError("--userns-remap takes HOST_ID[:SIZE], such as 100000:65536, not \"\(text)\"")
        }
        return UserNamespaceRemapping(hostID: hostID, size: size)
    }

    /// `-v` and `--tmpfs` as mounts.
    var mounts: [ContainerMount] {
        get throws {
            let binds = try volumes.map { volume -> ContainerMount in
                let parts = volume.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                guard parts.count == 2 || (parts.count == 3 && (parts[2] == "ro" || parts[2] == "rw")),
                      !parts[0].isEmpty, parts[1].hasPrefix("/")
                else {
                    throw ValidationError("-v takes HOST:CONTAINER[:ro] or NAME:CONTAINER[:ro] with an absolute CONTAINER path, not \"\(volume)\"")
                }
                let readOnly = parts.count == 3 && parts[2] == "ro"
                // Docker's rule: a source that is not a path is the name of a volume.
                if !parts[0].hasPrefix("/") && !parts[0].hasPrefix(".") {
                    return .volume(name: parts[0], target: parts[1], readOnly: readOnly)
                }
                let source = parts[0].hasPrefix("/")
                    ? parts[0] : URL(fileURLWithPath: parts[0]).standardizedFileURL.path
                return .bind(source: source, target: parts[1], readOnly: readOnly)
            }
            let tmpfsMounts = try tmpfs.map { text -> ContainerMount in
                let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
                guard let target = parts.first, target.hasPrefix("/") else {
                    throw ValidationError("--tmpfs takes an absolute PATH[:OPTIONS], not \"\(text)\"")
                }
                return .tmpfs(target: target, options: parts.count == 2 ? parts[1] : nil)
            }
            return binds + tmpfsMounts
        }
    }

    /// `--memory`, `--cpus`, `--pids-limit`, `--blkio-weight` and the `--device-*` rates as
    /// cgroup limits.
    var resources: CgroupResources {
        get throws {
            var resources = CgroupResources()
            resources.memoryLimit = try memory.map(parseBytes)
            resources.cpus = cpus
            resources.pidsLimit = pidsLimit
            resources.blockIOWeight = blkioWeight
            var throttles: [BlockIOThrottle] = []
            func add(_ options: [String], bytes: Bool, _ set: (inout BlockIOThrottle, UInt64) -> Void) throws {
                for option in options {
                    // DEVICE:RATE, split at the last colon: the device is a path.
                    guard let colon = option.lastIndex(of: ":") else {
                        throw ValidationError("invalid rate \"\(option)\": expected DEVICE:RATE")
                    }
                    let text = String(option[option.index(after: colon)...])
                    guard let rate = try bytes ? UInt64(exactly: parseBytes(text)) : UInt64(text) else {
                        throw ValidationError("invalid rate \"\(option)\"")
                    }
                    let device = try BlockDevice(parsing: String(option[..<colon]))
                    let index = throttles.firstIndex { $0.device == device } ?? {
                        throttles.append(BlockIOThrottle(device: device))
                        return throttles.count - 1
                    }()
                    set(&throttles[index], rate)
                }
            }
            try add(deviceReadBps, bytes: true) { $0.readBytesPerSecond = $1 }
            try add(deviceWriteBps, bytes: true) { $0.writeBytesPerSecond = $1 }
            try add(deviceReadIops, bytes: false) { $0.readOperationsPerSecond = $1 }
            try add(deviceWriteIops, bytes: false) { $0.writeOperationsPerSecond = $1 }
            resources.blockIOThrottles = throttles.isEmpty ? nil : throttles
            return resources
        }
    }

    /// `--network` as a value.
    var containerNetwork: ContainerNetwork {
        get throws {
            switch network {
            case "none": return .none
            case "host": return .host
            case NetworkManager.defaultNetworkName: return .bridge([])  // "bridge"
            case let text where text.hasPrefix("container:"):
                let target = String(text.dropFirst("container:".count))
                guard !target.isEmpty else { throw ValidationError("--network container: needs a container name or id") }
                return .container(target)
            case "": throw ValidationError("--network needs a value: none, host, bridge, container:NAME or a network name")
            default: return .bridge([network])
            }
        }
    }

    /// `-p` as port mappings.
    var ports: [PortMapping] {
        get throws {
            try publish.map { text in
                do {
                    return try PortMapping(parsing: text)
                } catch {
                    throw ValidationError("invalid -p: \(error)")
                }
            }
        }
    }

    /// What `--security-opt` asks for.
    var security: (noNewPrivileges: Bool, seccomp: SeccompChoice) {
        get throws {
            var result = (noNewPrivileges: false, seccomp: SeccompChoice.dockerDefault)
            for option in securityOptions {
                // Docker accepts both `=` and the older `:` as the separator.
                let parts = option.split(maxSplits: 1, whereSeparator: { $0 == "=" || $0 == ":" }).map(String.init)
                switch (parts.first, parts.count == 2 ? parts[1] : nil) {
                case ("no-new-privileges", nil), ("no-new-privileges", "true"): result.noNewPrivileges = true
                case ("no-new-privileges", "false"): result.noNewPrivileges = false
                case ("seccomp", "unconfined"): result.seccomp = .unconfined
                case ("seccomp", let path?):
                    guard let data = FileManager.default.contents(atPath: path) else {
                        throw ValidationError("cannot read the seccomp profile \(path)")
                    }
                    result.seccomp = .profile(json: String(decoding: data, as: UTF8.self))
                default: throw ValidationError("unsupported --security-opt \"\(option)\"")
                }
            }
            return result
        }
    }

    /// The `--health-*` flags as a health check, when `--health-cmd` is given.
    var healthcheck: HealthcheckConfiguration? {
        get throws {
            guard let healthCommand else {
                if healthInterval != nil || healthTimeout != nil || healthRetries != nil || healthStartPeriod != nil {
                    throw ValidationError("--health-interval, --health-timeout, --health-retries and --health-start-period need --health-cmd")
                }
                return nil
            }
            // Docker runs --health-cmd as CMD-SHELL.
            var check = HealthcheckConfiguration(command: ["/bin/sh", "-c", healthCommand])
            if let healthInterval { check.interval = try parseDuration(healthInterval) }
            if let healthTimeout { check.timeout = try parseDuration(healthTimeout) }
            if let healthRetries { check.retries = healthRetries }
            if let healthStartPeriod { check.startPeriod = try parseDuration(healthStartPeriod) }
            return check
        }
    }
}

/// Splits `KEY=value` (a bare `KEY` has an empty value, as in Docker's labels).
func keyValue(_ text: String) throws -> (String, String) {
    let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
    guard let key = parts.first, !key.isEmpty else { throw ValidationError("expected KEY=value, not \"\(text)\"") }
    return (key, parts.count == 2 ? parts[1] : "")
}

/// Parses Go's durations, as Docker's flags take them: `30s`, `1m30s`, `500ms`, `1h`.
func parseDuration(_ text: String) throws -> Duration {
    let units: [(String, Double)] = [("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9), ("h", 3600), ("m", 60), ("s", 1)]
    var rest = Substring(text)
    var seconds = 0.0
    while !rest.isEmpty {
        let number = rest.prefix { $0.isNumber || $0 == "." }
        rest = rest.dropFirst(number.count)
        guard let value = Double(number),
              let (unit, factor) = units.first(where: { rest.hasPrefix($0.0) })
        else { throw ValidationError("invalid duration \"\(text)\": use forms like 30s, 1m30s or 500ms") }
        rest = rest.dropFirst(unit.count)
        seconds += value * factor
    }
    guard !text.isEmpty else { throw ValidationError("empty duration") }
    return .milliseconds(Int64((seconds * 1000).rounded()))
}
