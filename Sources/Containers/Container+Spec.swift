import ContainerKernel
import Images
import Layers
import SystemSupport

extension Container {
    /// The kernel-level description of a run: the image's runtime config with the container's
    /// configuration on top, as `docker run` merges them.
    func makeProcessSpec(_ record: ContainerRecord) throws(ContainerError) -> ProcessSpec {
        let configuration = record.configuration
        let imageConfig = image.config.config
        let entrypoint = configuration.entrypoint ?? imageConfig?.entrypoint ?? []
        // Docker drops the image's Cmd when the entrypoint is overridden.
        let command = configuration.command ?? (configuration.entrypoint == nil ? imageConfig?.cmd ?? [] : [])
        let arguments = entrypoint + command
        guard !arguments.isEmpty else {
            throw ContainerError(code: .invalidArgument, container: record.name, detail: "start: no command given and the image has none")
        }
        let rootfs = directory + "/rootfs"
        var spec = ProcessSpec(rootfs: rootfs, arguments: arguments)
        let hostname = configuration.hostname ?? String(record.id.prefix(12))
        spec.hostname = hostname
        spec.environment = mergedEnvironment(image: imageConfig?.env ?? [], container: configuration.environment,
                                             hostname: hostname, terminal: configuration.terminal)
        spec.workingDirectory = configuration.workingDirectory ?? imageConfig?.workingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        let identity = try UserIdentity.resolve(configuration.user ?? imageConfig?.user ?? "", rootfs: rootfs)
        spec.userID = identity.uid
        spec.groupID = identity.gid
        spec.additionalGroups = identity.additionalGroups
        spec.readOnlyRootfs = configuration.readOnlyRootfs
        spec.noNewPrivileges = configuration.noNewPrivileges

        var capabilities = CapabilitySets.dockerDefault
        if configuration.privileged {
            capabilities = .all
            spec.maskedPaths = []
            spec.readOnlyPaths = []
        }
        spec.capabilities = capabilities.adding(
            configuration.capabilitiesAdded,
            dropping: configuration.capabilitiesDropped.subtracting(configuration.capabilitiesAdded))
        spec.resourceLimits = configuration.resourceLimits
        spec.sysctls = configuration.sysctls
        spec.oomScoreAdjustment = configuration.oomScoreAdjustment.map(Int32.init)
        if let range = configuration.userNamespace {
            guard identity.uid < range.size, identity.gid < range.size else {
                throw ContainerError(code: .invalidArgument, container: record.name,
                                     detail: "start: user \(identity.uid):\(identity.gid) is outside the user namespace's \(range.size) ids")
            }
            spec.namespaces.insert(.user)
            spec.uidMappings = range.mappings
            spec.gidMappings = range.mappings
        }
        switch configuration.seccomp {
        case _ where configuration.privileged: spec.seccomp = .unconfined
        case .dockerDefault: spec.seccomp = .dockerDefault
        case .unconfined: spec.seccomp = .unconfined
        case .profile(let json):
            spec.seccomp = .profile(try wrapping("parse the seccomp profile of", container: record.name) {
                try SeccompProfile(json: Array(json.utf8), capabilities: spec.capabilities.effective)
            })
        }

        // /etc/hostname, /etc/hosts and /etc/resolv.conf are the container's own files, as in
        // Docker: the network sandbox's when it has one, else written at create.
        let firstOwnMount = spec.mounts.count
        if let sandbox {
            sandbox.configure(&spec)
        } else {
            for file in ["hostname", "hosts", "resolv.conf"] {
                spec.mounts.append(.bind(directory + "/" + file, to: "/etc/" + file, readOnly: false, recursive: false))
            }
            if configuration.network == .host { spec.namespaces.remove(.network) }
        }
        for mount in configuration.mounts {
            switch mount {
            case .bind(let source, let target, let readOnly):
                spec.mounts.append(.bind(source, to: target, readOnly: readOnly))
            case .volume(let name, let target, let readOnly):
                spec.mounts.append(.bind(runtime.volumeDataPath(name), to: target, readOnly: readOnly))
            case .tmpfs(let target, let options):
                spec.mounts.append(.tmpfs(target, data: options))
            }
        }
        // Shallower targets first, as Docker sorts mounts, so that a volume or bind at /etc does
        // not hide /etc/hosts; at equal depth the configuration's mounts stay last and win.
        let own = spec.mounts[firstOwnMount...].enumerated().sorted { first, second in
            let depths = (pathDepth(first.element.target), pathDepth(second.element.target))
            return depths.0 != depths.1 ? depths.0 < depths.1 : first.offset < second.offset
        }
        spec.mounts.replaceSubrange(firstOwnMount..., with: own.map(\.element))
        if configuration.initProcess {
            // berth-supervisor's init mode: /dev is the container's own tmpfs, so the mount point
            // is not a change of the image's filesystem.
            let executable = try wrapping("run an init process in", container: record.name) {
                try Supervision.initExecutable(in: runtime.root + "/supervisor")
            }
            spec.mounts.append(.bind(executable, to: "/dev/init", readOnly: true, recursive: false))
            spec.arguments = ["/dev/init", "--init", "--"] + arguments
        }
        spec.cgroup = CgroupPlacement(path: Container.cgroupPath(record.id), resources: configuration.resources)
        if configuration.terminal {
            spec.io = ProcessIO(terminal: TerminalSize(rows: 24, columns: 80))
        } else {
            spec.io = ProcessIO(standardInput: configuration.interactive ? .pipe : .null)
        }
        return spec
    }

    private func pathDepth(_ path: String) -> Int {
        path.split(separator: "/").filter { $0 != "." }.count
    }

    private func mergedEnvironment(image: [String], container: [String], hostname: String, terminal: Bool) -> [String] {
        var order: [String] = []
        var values: [String: String] = [:]
        func set(_ pair: String) {
            let key = String(pair.prefix { $0 != "=" })
            if values[key] == nil { order.append(key) }
            values[key] = pair
        }
        set("PATH=\(ProcessSpec.defaultPath)")
        set("HOSTNAME=\(hostname)")
        if terminal { set("TERM=xterm") }
        image.forEach(set)
        container.forEach(set)
        return order.compactMap { values[$0] }
    }
}

/// A user and its groups, resolved like Docker: numbers as they are, names through the
/// container's `/etc/passwd` and `/etc/group`.
struct UserIdentity {
    var uid: UInt32
    var gid: UInt32
    var additionalGroups: [UInt32]

    /// The largest `/etc/passwd` or `/etc/group` read (glibc has no limit; 4 MiB is some
    /// 50,000 users, and keeps a `/dev/zero` there from exhausting the host's memory).
    static let databaseLimit = 4 << 20

    static func resolve(_ text: String, rootfs: String) throws(ContainerError) -> UserIdentity {
        guard !text.isEmpty else { return UserIdentity(uid: 0, gid: 0, additionalGroups: []) }
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let passwd = try database("/etc/passwd", rootfs: rootfs)
        let groups = try database("/etc/group", rootfs: rootfs)
        var uid: UInt32
        var gid: UInt32 = 0
        var userName: String?
        if let number = UInt32(parts[0]) {
            uid = number
            if let entry = passwd.first(where: { $0.count > 3 && UInt32($0[2]) == number }) {
                gid = UInt32(entry[3]) ?? 0
                userName = String(entry[0])
            }
        } else if let entry = passwd.first(where: { $0.count > 3 && $0[0] == parts[0] }), let id = UInt32(entry[2]) {
            uid = id
            gid = UInt32(entry[3]) ?? 0
            userName = parts[0]
        } else {
            throw ContainerError(code: .invalidArgument, detail: "unable to find user \(parts[0]): no matching entries in passwd file")
        }
        if parts.count == 2 {
            if let number = UInt32(parts[1]) {
                gid = number
            } else if let entry = groups.first(where: { $0.count > 2 && $0[0] == parts[1] }), let id = UInt32(entry[2]) {
                gid = id
            } else {
                throw ContainerError(code: .invalidArgument, detail: "unable to find group \(parts[1]): no matching entries in group file")
            }
        }
        let additional = userName.map { user in
            groups.filter { $0.count > 3 && $0[3].split(separator: ",").contains(Substring(user)) }.compactMap { UInt32($0[2]) }
        } ?? []
        return UserIdentity(uid: uid, gid: gid, additionalGroups: additional.filter { $0 != gid })
    }

    /// The lines of `path` in the container, split at `:`; none when it does not exist.
    ///
    /// The image (or the running container) controls the file: it is read inside the root
    /// filesystem, never through a symlink to the host, and only as a regular file of at most
    /// ``databaseLimit`` bytes (a FIFO would block the caller's thread for good).
    private static func database(_ path: String, rootfs: String) throws(ContainerError) -> [[Substring]] {
        let bytes: [UInt8]?
        do {
            bytes = try LayerError.from(try readRegularFile(path, inRoot: rootfs, limit: databaseLimit))
        } catch {
            throw ContainerError(code: .invalidArgument, detail: "read \(path) to look up a user", underlying: error)
        }
        return String(decoding: bytes ?? [], as: UTF8.self).split(separator: "\n")
            .map { $0.split(separator: ":", omittingEmptySubsequences: false) }
    }
}

extension HealthcheckConfiguration {
    /// The image's `Healthcheck` in Docker's form (`["CMD", …]`, `["CMD-SHELL", "…"]`,
    /// `["NONE"]`), or `nil` when it disables checks or has no test.
    init?(_ image: RuntimeConfig.Healthcheck) {
        guard let test = image.test, let kind = test.first else { return nil }
        let command: [String]
        switch kind {
        case "CMD": command = Array(test.dropFirst())
        case "CMD-SHELL": command = ["/bin/sh", "-c", test.dropFirst().joined(separator: " ")]
        default: return nil
        }
        guard !command.isEmpty else { return nil }
        func duration(_ nanoseconds: Int64?, _ fallback: Duration) -> Duration {
            nanoseconds.map { $0 > 0 ? .nanoseconds($0) : fallback } ?? fallback
        }
        self.init(command: command, interval: duration(image.interval, .seconds(30)),
                  timeout: duration(image.timeout, .seconds(30)), retries: image.retries ?? 3,
                  startPeriod: duration(image.startPeriod, .zero))
    }
}
