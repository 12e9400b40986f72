public import ContainerKernel
public import Networking

/// What a container should be, in Docker's terms: `docker run`'s flags as Swift values.
///
/// ```swift
/// var config = ContainerConfiguration(image: "busybox", command: ["sleep", "60"])
/// config.name = "fixture"
/// config.environment = ["MODE=test"]
/// config.resources.memoryLimit = 64 << 20
/// let container = try await runtime.create(config)
/// ```
public struct ContainerConfiguration: Sendable, Codable {
    /// The image reference (`busybox`, `127.0.0.1:5000/app:1`, `name@sha256:…`) or image id.
    public var image: String
    /// Replaces the image's `Cmd` (`nil` keeps it).
    public var command: [String]?
    /// Replaces the image's `Entrypoint` (`nil` keeps it; `[]` clears it).
    public var entrypoint: [String]?
    /// `KEY=value` pairs, merged over the image's (same key: this one wins).
    public var environment: [String]
    /// The working directory; `nil` uses the image's, else `/`.
    public var workingDirectory: String?
    /// `uid[:gid]` or `name[:group]` resolved in the container's `/etc/passwd` and `/etc/group`;
    /// `nil` uses the image's `User`, else root.
    public var user: String?
    /// The hostname; `nil` uses the first 12 characters of the id, as Docker does.
    public var hostname: String?
    /// Labels, for filtering in ``ContainerRuntime/list(all:labels:name:status:)``.
    public var labels: [String: String]
    /// A unique name; `nil` generates one.
    public var name: String?
    /// Extra mounts: bind mounts, named volumes, tmpfs.
    public var mounts: [ContainerMount]
    /// Make the root filesystem read-only (`--read-only`).
    public var readOnlyRootfs: Bool
    /// cgroup limits (`--memory`, `--cpus`, `--pids-limit`, `--cpuset-cpus`).
    public var resources: CgroupResources
    /// Capabilities added to Docker's default set (`--cap-add`); a capability both added and
    /// dropped is added.
    ///
    /// An unknown name cannot be stored: `Capability(named:)` and
    /// `Capability.parsing(_:)` throw for it when the configuration is built.
    ///
    /// - Important: `SYS_ADMIN` gives the container the host's root on a cgroup v1 host. Berth
    ///   loads no LSM profile (AppArmor, SELinux), so without a ``userNamespace`` the container
    ///   can mount a cgroup v1 hierarchy and make the host's kernel run the hierarchy's
    ///   `release_agent`, a program of its choosing, as root on the host (the CVE-2022-0492
    ///   class). On cgroup v2 it still mounts file systems and reaches much of the kernel that
    ///   the default set keeps away. Add it, and likewise set ``privileged``, only for images
    ///   you trust as you trust the host.
    public var capabilitiesAdded: Set<Capability>
    /// Capabilities removed (`--cap-drop`); `Capability.all` removes every one
    /// (`--cap-drop ALL`).
    public var capabilitiesDropped: Set<Capability>
    /// The seccomp profile.
    public var seccomp: SeccompChoice
    /// Every capability, no seccomp, no masked paths (`--privileged`).
    ///
    /// - Important: A privileged container is the host's root: it holds `SYS_ADMIN` (see
    ///   ``capabilitiesAdded``) with nothing masked and no seccomp filter.
    public var privileged: Bool
    /// `--security-opt no-new-privileges`.
    public var noNewPrivileges: Bool
    /// Resource limits of the main process and what it starts (`--ulimit nofile=1024:2048`),
    /// set with `prlimit(2)` before it runs; a limit not listed keeps this process's value.
    ///
    /// Raising a hard limit above this process's needs `CAP_SYS_RESOURCE` here (the start
    /// fails with ``ContainerError/Code/kernel`` otherwise). ``validate()`` refuses a soft limit
    /// above its hard limit.
    public var resourceLimits: [ResourceLimit]
    /// Namespaced sysctls written in the container before its program runs
    /// (`--sysctl net.ipv4.ip_unprivileged_port_start=0`), by name with dots.
    ///
    /// Only sysctls that belong to the container's own namespaces are accepted, as Docker
    /// accepts them: `net.*` (not with ``ContainerNetwork/host`` or
    /// ``ContainerNetwork/container(_:)``, whose network namespace is not the container's own),
    /// the System V IPC ones (`kernel.msgmax`, `kernel.msgmnb`, `kernel.msgmni`, `kernel.sem`,
    /// `kernel.shmall`, `kernel.shmmax`, `kernel.shmmni`, `kernel.shm_rmid_forced`) and
    /// `fs.mqueue.*`. Any other (a host-wide one such as `vm.overcommit_memory`,
    /// `kernel.hostname`: use ``hostname``) is refused by ``validate()``. A sysctl the kernel
    /// does not have fails the start.
    public var sysctls: [String: String]
    /// The OOM killer's bias for the container's main process, `-1000` (never killed) to
    /// `1000` (killed first) (`--oom-score-adj`); `nil` inherits this process's.
    ///
    /// Lowering it below this process's value needs `CAP_SYS_RESOURCE` here.
    public var oomScoreAdjustment: Int?
    /// Runs the container in a user namespace whose root is an unprivileged range of host
    /// ids (`--userns-remap`); `nil` keeps the host's ids, as Docker does by default.
    ///
    /// Root in the container is then an ordinary user on the host: a process that escapes
    /// the container's other isolation holds no privilege over the host's files and
    /// processes, and its capabilities reach only what the namespace owns.
    ///
    /// The image's files are owned correctly inside: the root filesystem stacks copies of the
    /// image's layers whose files have the mapped owners, one per layer and mapping, made by the
    /// first ``ContainerRuntime/create(_:)`` that needs them (a copy of the image's files, once)
    /// and shared, read-only, by every container with the same mapping; each container's
    /// changes stay its own. File capabilities (`security.capability`) of the image are lost in
    /// the copies. Files of volumes and bind mounts keep
    /// their host owners: a host owner outside the range appears as `nobody` (65534) inside.
    /// Needs a kernel with user namespaces enabled (`user.max_user_namespaces` above 0).
    public var userNamespace: UserNamespaceRemapping?
    /// A last-resort hook that edits the kernel-level description of the main process just
    /// before it is spawned, at every start; `nil` for none.
    ///
    /// It gets the `ProcessSpec` built from the rest of the configuration (mounts, limits,
    /// capabilities, namespaces…) and may change anything in it. Nothing checks what it does:
    /// it can undo every protection of the container. Prefer a field of the configuration
    /// where one exists. An error it throws fails the start with
    /// ``ContainerError/Code/invalidArgument`` (`underlying` holds it). Exec'd processes do
    /// not pass through it.
    ///
    /// Not stored with the configuration: a container started by a runtime that did not create
    /// it (another process, after this one exited) starts without it.
    public var processSpecHook: (@Sendable (inout ProcessSpec) async throws -> Void)?
    /// The signal `stop` sends first; `nil` uses the image's `StopSignal`, else `SIGTERM`.
    public var stopSignal: String?
    /// Seconds between the stop signal and `SIGKILL`.
    public var stopTimeout: Int
    /// The network.
    public var network: ContainerNetwork
    /// More names peers on its bridge networks resolve to it (`--network-alias`); its name
    /// always resolves.
    public var networkAliases: [String]
    /// Published ports (`-p [hostIP:]hostPort:containerPort[/tcp|udp]`; host port 0 picks a
    /// free one, reported in ``ContainerState/publishedPorts``). Needs a bridge network.
    public var ports: [PortMapping]
    /// When to restart the container after it exits.
    public var restartPolicy: RestartPolicy
    /// A health check; `nil` uses the image's `Healthcheck`, if any.
    public var healthcheck: HealthcheckConfiguration?
    /// Remove the container when it exits (`--rm`).
    public var autoRemove: Bool
    /// When to pull the image.
    public var pullPolicy: PullPolicy
    /// Keep stdin open as a pipe the caller writes (`-i`).
    public var interactive: Bool
    /// Allocate a pseudo-terminal (`-t`).
    public var terminal: Bool
    /// Run an init as pid 1 that runs the command as its child, passes signals on and reaps
    /// orphaned processes (`--init`, Docker's tini). The init is `berth-supervisor`, embedded in
    /// the library, written once under the runtime's root (`supervisor/`, named by its digest)
    /// and bind-mounted read-only at `/dev/init`; being static, it works in any image.
    public var initProcess: Bool
    /// Logs: the size at which the log file rotates, and how many files are kept.
    public var logLimits: LogLimits
    /// Whether the container dies with this process (``ContainerLifetime/embedded``, the
    /// default) or outlives it (``ContainerLifetime/detached``, `docker run -d`).
    public var lifetime: ContainerLifetime
    /// Where the main process's stdout and stderr go: the log (the default), a stream the
    /// owner reads with ``Container/output()``, or nowhere.
    public var output: OutputDestination
    /// The deadline of each run of the main process, counted from its start; `nil` for none.
    ///
    /// At the deadline Berth kills every process of the container (`SIGKILL`, thawing a
    /// paused one first) and the run ends with `ExitStatus.timedOut`, which no signal the
    /// program sends itself can produce; a timed-out run is not restarted. The deadline is
    /// kept by the owning process, so an embedded container only: a detached one is refused.
    public var timeout: Duration?

    /// A configuration with Docker's defaults.
    ///
    /// - Parameters:
    ///   - image: The image reference or id.
    ///   - command: Replaces the image's `Cmd`; `nil` keeps it.
    public init(image: String, command: [String]? = nil) {
        self.image = image
        self.command = command
        self.entrypoint = nil
        self.environment = []
        self.workingDirectory = nil
        self.user = nil
        self.hostname = nil
        self.labels = [:]
        self.name = nil
        self.mounts = []
        self.readOnlyRootfs = false
        self.resources = CgroupResources()
        self.capabilitiesAdded = []
        self.capabilitiesDropped = []
        self.resourceLimits = []
        self.sysctls = [:]
        self.oomScoreAdjustment = nil
        self.userNamespace = nil
        self.processSpecHook = nil
        self.seccomp = .dockerDefault
        self.privileged = false
        self.noNewPrivileges = false
        self.stopSignal = nil
        self.stopTimeout = 10
        self.network = .none
        self.networkAliases = []
        self.ports = []
        self.restartPolicy = .no
        self.healthcheck = nil
        self.autoRemove = false
        self.pullPolicy = .missing
        self.interactive = false
        self.terminal = false
        self.initProcess = false
        self.logLimits = LogLimits()
        self.lifetime = .embedded
        self.output = .log
        self.timeout = nil
    }
}

/// Where a container's main process writes its stdout and stderr.
public enum OutputDestination: String, Sendable, Codable, Hashable, CaseIterable {
    /// The json-file log, read with ``Container/logs(follow:since:tail:)`` by any process (the
    /// default, and the only choice for a detached container). It costs a write to disk per
    /// line and is bounded by ``ContainerConfiguration/logLimits``.
    case log
    /// Pipes the owner reads through ``Container/output()`` (`docker run` attached): nothing
    /// touches the disk and the stream ends as soon as the process has closed its output.
    /// What is written and not yet read stays in memory, so read it as it comes.
    case stream
    /// `/dev/null`: the output costs nothing and is gone.
    case discard
}

/// How long a container's processes live.
public enum ContainerLifetime: String, Sendable, Codable, Hashable, CaseIterable {
    /// The container's process is a child of this process and dies with it; what it leaves
    /// behind is removed by the next runtime on the root. What a test fixture wants.
    case embedded
    /// `berth-supervisor`, a small C program, holds the container's process, writes its log and
    /// records its exit, so the container outlives this process: any process that opens a
    /// runtime on the same root lists it, reads its logs, execs into it, stops and removes it
    /// (`docker run -d`).
    ///
    /// Published ports, a terminal and an stdin pipe need this process and are refused. The
    /// restart policy and health checks are applied by the process that started the current
    /// run, while it lives; runtimes that adopted the run only observe its end. A detached
    /// container with ``ContainerConfiguration/autoRemove`` that ends after its starter has exited is removed by the
    /// next runtime that opens the root.
    case detached
}

extension ContainerConfiguration {
    /// Decodes a configuration; a field the encoding lacks keeps its default, so records
    /// written before the field existed still load.
    ///
    /// - Parameter decoder: The decoder.
    /// - Throws: `DecodingError` when `image` is missing or a field has the wrong type.
    public init(from decoder: any Decoder) throws {
        let values = try decoder.container(keyedBy: CodingKeys.self)
        self.init(image: try values.decode(String.self, forKey: .image),
                  command: try values.decodeIfPresent([String].self, forKey: .command))
        if let value = try values.decodeIfPresent([String].self, forKey: .entrypoint) { entrypoint = value }
        if let value = try values.decodeIfPresent([String].self, forKey: .environment) { environment = value }
        if let value = try values.decodeIfPresent(String.self, forKey: .workingDirectory) { workingDirectory = value }
        if let value = try values.decodeIfPresent(String.self, forKey: .user) { user = value }
        if let value = try values.decodeIfPresent(String.self, forKey: .hostname) { hostname = value }
        if let value = try values.decodeIfPresent([String: String].self, forKey: .labels) { labels = value }
        if let value = try values.decodeIfPresent(String.self, forKey: .name) { name = value }
        if let value = try values.decodeIfPresent([ContainerMount].self, forKey: .mounts) { mounts = value }
        if let value = try values.decodeIfPresent(Bool.self, forKey: .readOnlyRootfs) { readOnlyRootfs = value }
        if let value = try values.decodeIfPresent(CgroupResources.self, forKey: .resources) { resources = value }
        // Names, as ``Capability`` encodes itself; records written before capabilities were
        // typed may hold Docker's `ALL`.
        if let value = try values.decodeIfPresent([String].self, forKey: .capabilitiesAdded) {
            capabilitiesAdded = try capabilities(value, .capabilitiesAdded)
        }
        if let value = try values.decodeIfPresent([String].self, forKey: .capabilitiesDropped) {
            capabilitiesDropped = try capabilities(value, .capabilitiesDropped)
        }
        if let value = try values.decodeIfPresent([ResourceLimit].self, forKey: .resourceLimits) { resourceLimits = value }
        if let value = try values.decodeIfPresent([String: String].self, forKey: .sysctls) { sysctls = value }
        if let value = try values.decodeIfPresent(Int.self, forKey: .oomScoreAdjustment) { oomScoreAdjustment = value }
        if let value = try values.decodeIfPresent(UserNamespaceRemapping.self, forKey: .userNamespace) { userNamespace = value }
        if let value = try values.decodeIfPresent(SeccompChoice.self, forKey: .seccomp) { seccomp = value }
        if let value = try values.decodeIfPresent(Bool.self, forKey: .privileged) { privileged = value }
        if let value = try values.decodeIfPresent(Bool.self, forKey: .noNewPrivileges) { noNewPrivileges = value }
        if let value = try values.decodeIfPresent(String.self, forKey: .stopSignal) { stopSignal = value }
        if let value = try values.decodeIfPresent(Int.self, forKey: .stopTimeout) { stopTimeout = value }
        if let value = try values.decodeIfPresent(ContainerNetwork.self, forKey: .network) { network = value }
        if let value = try values.decodeIfPresent([String].self, forKey: .networkAliases) { networkAliases = value }
        if let value = try values.decodeIfPresent([PortMapping].self, forKey: .ports) { ports = value }
        if let value = try values.decodeIfPresent(RestartPolicy.self, forKey: .restartPolicy) { restartPolicy = value }
        if let value = try values.decodeIfPresent(HealthcheckConfiguration.self, forKey: .healthcheck) { healthcheck = value }
        if let value = try values.decodeIfPresent(Bool.self, forKey: .autoRemove) { autoRemove = value }
        if let value = try values.decodeIfPresent(PullPolicy.self, forKey: .pullPolicy) { pullPolicy = value }
        if let value = try values.decodeIfPresent(Bool.self, forKey: .interactive) { interactive = value }
        if let value = try values.decodeIfPresent(Bool.self, forKey: .terminal) { terminal = value }
        if let value = try values.decodeIfPresent(Bool.self, forKey: .initProcess) { initProcess = value }
        if let value = try values.decodeIfPresent(LogLimits.self, forKey: .logLimits) { logLimits = value }
        if let value = try values.decodeIfPresent(ContainerLifetime.self, forKey: .lifetime) { lifetime = value }
        if let value = try values.decodeIfPresent(OutputDestination.self, forKey: .output) { output = value }
        if let value = try values.decodeIfPresent(Duration.self, forKey: .timeout) { timeout = value }
        func capabilities(_ names: [String], _ key: CodingKeys) throws -> Set<Capability> {
            do {
                return try Capability.parsing(names)
            } catch {
                throw DecodingError.dataCorruptedError(forKey: key, in: values, debugDescription: error.detail)
            }
        }
    }

    /// The stored fields: every one but ``processSpecHook``, a closure.
    enum CodingKeys: String, CodingKey {
        case image, command, entrypoint, environment, workingDirectory, user, hostname, labels, name, mounts
        case readOnlyRootfs, resources, capabilitiesAdded, capabilitiesDropped, seccomp, privileged
        case noNewPrivileges, resourceLimits, sysctls, oomScoreAdjustment, userNamespace, stopSignal, stopTimeout
        case network, networkAliases, ports, restartPolicy, healthcheck, autoRemove, pullPolicy, interactive
        case terminal, initProcess, logLimits, lifetime, output, timeout
    }
}

/// A mount in a container (`-v`, `--mount`, `--tmpfs`).
public enum ContainerMount: Sendable, Codable, Hashable {
    /// A host path (`-v /host:/container[:ro]`).
    case bind(source: String, target: String, readOnly: Bool)
    /// A tmpfs (`--tmpfs /run:size=64m`).
    case tmpfs(target: String, options: String?)
    /// A named volume of the runtime (`-v NAME:/container[:ro]`), created when the container is
    /// if it does not exist yet. When the volume is new and empty and the image has a directory
    /// at `target`, that directory's content is copied into the volume first, as in Docker.
    case volume(name: String, target: String, readOnly: Bool)
}

/// Which seccomp profile a container runs under.
public enum SeccompChoice: Sendable, Codable, Hashable {
    /// Docker's default profile.
    case dockerDefault
    /// No filter (`--security-opt seccomp=unconfined`).
    case unconfined
    /// An OCI or Docker JSON profile, as text.
    case profile(json: String)
}

/// The network of a container.
public enum ContainerNetwork: Sendable, Codable, Hashable {
    /// Its own network namespace with only `lo` (`--network none`).
    case none
    /// The host's network (`--network host`).
    case host
    /// User-defined bridge networks by name (`--network NAME`); an empty list is the default
    /// bridge network. Peers on the same network reach the container by name and alias.
    case bridge([String])
    /// The network namespace of another container, by id or name (`--network container:NAME`).
    case container(String)
}

/// When a container is restarted after it exits (`--restart`), while its owner lives.
public enum RestartPolicy: Sendable, Codable, Hashable {
    /// Never.
    case no
    /// After a non-zero exit, at most `maximumRetries` times (`nil`: without limit).
    case onFailure(maximumRetries: Int?)
    /// Always, until stopped.
    case always
    /// Always, unless it was stopped by ``Container/stop(timeout:)``.
    case unlessStopped

    /// Parses Docker's `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    ///
    /// - Throws: ``ContainerError`` with ``ContainerError/Code/invalidArgument``.
    public init(parsing text: String) throws(ContainerError) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        switch parts.first {
        case "no": self = .no
        case "always": self = .always
        case "unless-stopped": self = .unlessStopped
        case "on-failure":
            guard parts.count == 1 || Int(parts[1]) != nil else {
                throw ContainerError(code: .invalidArgument, detail: "invalid restart policy \"\(text)\"")
            }
            self = .onFailure(maximumRetries: parts.count == 2 ? Int(parts[1]) : nil)
        default:
            throw ContainerError(code: .invalidArgument, detail: "invalid restart policy \"\(text)\": use no, on-failure[:N], always or unless-stopped")
        }
    }
}

/// When the image is pulled.
public enum PullPolicy: String, Sendable, Codable, Hashable {
    /// Always pull, even when the image is present.
    case always
    /// Pull when the image is not in the store (the default).
    case missing
    /// Never pull: a missing image is an error.
    case never
}

/// A health check: a command run in the container on an interval.
public struct HealthcheckConfiguration: Sendable, Codable, Hashable {
    /// The command, run directly (as exec form).
    public var command: [String]
    /// Time between checks.
    public var interval: Duration
    /// How long one check may take.
    public var timeout: Duration
    /// Consecutive failures that make the container unhealthy.
    public var retries: Int
    /// Time after start during which failures do not count.
    public var startPeriod: Duration

    /// Creates a health check; the defaults are Docker's (30 s, 30 s, 3, 0 s).
    public init(command: [String], interval: Duration = .seconds(30), timeout: Duration = .seconds(30),
                retries: Int = 3, startPeriod: Duration = .zero) {
        self.command = command
        self.interval = interval
        self.timeout = timeout
        self.retries = retries
        self.startPeriod = startPeriod
    }
}

/// How large a container's log may grow (`--log-opt max-size, max-file`).
public struct LogLimits: Sendable, Codable, Hashable {
    /// Bytes at which the file rotates.
    public var maximumSize: Int
    /// How many files are kept, the current one included.
    public var maximumFiles: Int

    /// 10 MiB × 3 files by default.
    public init(maximumSize: Int = 10 << 20, maximumFiles: Int = 3) {
        self.maximumSize = maximumSize
        self.maximumFiles = maximumFiles
    }
}
