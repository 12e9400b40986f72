import ArgumentParser
import ContainerKernel

#if canImport(Glibc)
import Glibc
#endif

/// `berth run`: runs a command in a new container and exits with its exit code.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command in a new container.",
        discussion: "Exit status: the command's, or 125 when berth itself fails, 126 when the command cannot be executed, 127 when it is not found."
    )

    @Option(help: "Root filesystem directory to run in.")
    var rootfs: String

    @Option(help: "Container host name.")
    var hostname: String?

    @Option(name: [.customShort("e"), .customLong("env")], help: "Set an environment variable (KEY=value).")
    var environment: [String] = []

    @Option(name: [.customShort("w"), .customLong("workdir")], help: "Working directory inside the container.")
    var workingDirectory = "/"

    @Option(name: [.customShort("u"), .customLong("user")], help: "UID[:GID] to run as.")
    var user: String?

    @Option(help: "Memory limit (e.g. 32m, 1g).")
    var memory: String?

    @Option(name: .customLong("pids-limit"), help: "Maximum number of processes.")
    var pidsLimit: Int64?

    @Option(help: "Number of CPUs (e.g. 0.5).")
    var cpus: Double?

    @Option(name: .customLong("cap-add"), help: "Add a Linux capability.")
    var capAdd: [String] = []

    @Option(name: .customLong("cap-drop"), help: "Drop a Linux capability (ALL drops every one).")
    var capDrop: [String] = []

    @Flag(name: .customLong("read-only"), help: "Mount the root filesystem read-only.")
    var readOnly = false

    @Flag(help: "Give every capability, no seccomp filter, no masked paths.")
    var privileged = false

    @Option(help: "Network: none (own namespace, loopback only) or host.")
    var network = "none"

    @Option(name: .customLong("security-opt"), help: "no-new-privileges, or seccomp=unconfined.")
    var securityOptions: [String] = []

    @Flag(name: [.customShort("t"), .customLong("tty")], help: "Allocate a pseudo-terminal.")
    var tty = false

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.")
    var command: [String] = []

    func run() async throws {
        let arguments = command.first == "--" ? Array(command.dropFirst()) : command
        guard !arguments.isEmpty else { throw ValidationError("no command given") }
        do {
            let spec = try makeSpec(arguments)
            let process = try await ProcessHandle.spawn(spec)
            if let terminal = process.terminal { await relay(terminal) }
            throw ExitCode(await process.wait().code)
        } catch let error as KernelError {
            printError("\(error)")
            if error.stage == .exec {
                throw ExitCode(error.errno == .noSuchFileOrDirectory ? ExitCodes.notFound : ExitCodes.notExecutable)
            }
            throw ExitCode(ExitCodes.berthError)
        }
    }

    func makeSpec(_ arguments: [String]) throws -> ProcessSpec {
        var spec = ProcessSpec(rootfs: rootfs, arguments: arguments)
        spec.hostname = hostname ?? "berth"
        spec.environment += environment
        spec.environment.append("HOSTNAME=\(spec.hostname ?? "")")
        spec.workingDirectory = workingDirectory
        if let user {
            let parts = user.split(separator: ":", maxSplits: 1).map(String.init)
            guard let uid = UInt32(parts[0]), parts.count == 1 || UInt32(parts[1]) != nil else {
                throw ValidationError("--user takes numeric UID[:GID], not \"\(user)\"")
            }
            spec.userID = uid
            spec.groupID = parts.count == 2 ? UInt32(parts[1]) ?? uid : uid
        }
        switch network {
        case "none": break
        case "host": spec.namespaces.remove(.network)
        default: throw ValidationError("--network takes none or host")
        }
        if privileged {
            spec.capabilities = .all
            spec.seccomp = .unconfined
            spec.maskedPaths = []
            spec.readOnlyPaths = []
        }
        let dropAll = capDrop.contains { $0.uppercased() == "ALL" }
        let added = try Set(capAdd.map { try Capability(named: $0) })
        let dropped = dropAll ? Capability.all : try Set(capDrop.map { try Capability(named: $0) })
        spec.capabilities = spec.capabilities.adding(added.subtracting(dropAll ? [] : dropped), dropping: dropped.subtracting(added))
        for option in securityOptions {
            switch option {
            case "no-new-privileges", "no-new-privileges:true": spec.noNewPrivileges = true
            case "seccomp=unconfined", "seccomp:unconfined": spec.seccomp = .unconfined
            default: throw ValidationError("unsupported --security-opt \"\(option)\"")
            }
        }
        spec.readOnlyRootfs = readOnly
        var resources = CgroupResources()
        if let memory { resources.memoryLimit = try parseBytes(memory) }
        resources.pidsLimit = pidsLimit
        if let cpus {
            resources.cpuPeriod = 100_000
            resources.cpuQuota = Int64(cpus * 100_000)
        }
        spec.cgroup = CgroupPlacement(path: "berth/\(randomID())", resources: resources)
        if tty {
            spec.io = ProcessIO(terminal: currentTerminalSize())
        } else {
            spec.io = .inherit
        }
        return spec
    }

    /// Copies the host terminal to the container's and back until the container closes it.
    func relay(_ terminal: Terminal) async {
        var saved = termios()
        let isTTY = tcgetattr(0, &saved) == 0
        if isTTY {
            var raw = saved
            cfmakeraw(&raw)
            tcsetattr(0, TCSANOW, &raw)
        }
        defer { if isTTY { tcsetattr(0, TCSANOW, &saved) } }
        let pump = Task.detached {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !Task.isCancelled {
                let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                guard n > 0 else { break }
                try? await terminal.input.write(Array(buffer[0..<n]))
            }
        }
        for await chunk in terminal.output {
            _ = chunk.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        }
        pump.cancel()
    }

    func currentTerminalSize() -> TerminalSize {
        var size = winsize()
        guard ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0 else { return TerminalSize(rows: 24, columns: 80) }
        return TerminalSize(rows: size.ws_row, columns: size.ws_col)
    }

    func randomID() -> String {
        (0..<12).map { _ in String(UInt8.random(in: 0...15), radix: 16) }.joined()
    }
}
