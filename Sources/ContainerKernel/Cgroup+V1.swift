import Glibc

extension Cgroup {
    /// A cgroup on cgroup v1: one directory in each hierarchy Berth manages
    /// (`Documentation/admin-guide/cgroup-v1/`).
    ///
    /// Only the controllers' own hierarchies are joined; a `name=systemd` hierarchy is left
    /// alone, since Berth does not run under systemd's management.
    struct V1: CgroupBackend {
        /// This cgroup's directory in one hierarchy, and the controllers mounted there.
        struct Directory: Sendable {
            var path: String
            var controllers: Set<CgroupController>
        }

        /// The cgroup's directories, in mount point order; never empty.
        let directories: [Directory]
        /// The directory to list and kill processes from: the freezer's, so that a frozen cgroup
        /// can be thawed after the kill, or else the first. Every directory holds the same
        /// processes.
        let primary: String

        init(directories: [Directory]) {
            self.directories = directories
            primary = directories.first { $0.controllers.contains(.freezer) }?.path ?? directories.first?.path ?? ""
        }

        var version: CgroupVersion { .v1 }
        var processesFile: String { primary + "/cgroup.procs" }
        var directoryDescriptor: Int32? { nil }

        /// The directory of the hierarchy that carries `controller`, if it is mounted.
        func directory(for controller: CgroupController) -> String? {
            directories.first { $0.controllers.contains(controller) }?.path
        }

        /// Creates the directories and writes the limits; see ``Cgroup/create(_:resources:in:)``.
        static func create(
            _ path: String, mounts: [CgroupHierarchy.LegacyMount], resources: CgroupResources
        ) throws(KernelError) -> V1 {
            let available = mounts.reduce(into: Set<CgroupController>()) { $0.formUnion($1.controllers) }
            // The devices controller enforces the allowlist even when it is Docker's default;
            // running without it would silently allow every device.
            let missing = resources.requiredControllers(.v1).union([.devices]).subtracting(available)
            guard missing.isEmpty else {
                throw KernelError(
                    code: .unsupported,
                    detail: "create cgroup \(path): cgroup v1 controller \(missing.names) is not mounted")
            }
            var created: [Directory] = []
            do throws(KernelError) {
                for mount in mounts {
                    let directory = try makeDirectories(
                        path, below: mount.mountPoint, cpuset: mount.controllers.contains(.cpuset))
                    created.append(Directory(path: directory, controllers: mount.controllers))
                }
                let cgroup = V1(directories: created)
                try cgroup.apply(resources, merged: resources, previous: nil)
                return cgroup
            } catch {
                for directory in created.reversed() { try? CgroupFile.removeDirectory(directory.path) }
                throw error
            }
        }

        /// Opens an existing cgroup: its directory in each hierarchy that has one.
        ///
        /// - Throws: ``KernelError`` with ``KernelError/Code/invalidState`` when no hierarchy has it.
        static func existing(_ path: String, mounts: [CgroupHierarchy.LegacyMount]) throws(KernelError) -> V1 {
            let directories = mounts.compactMap { mount in
                access(mount.mountPoint + "/" + path, F_OK) == 0
                    ? Directory(path: mount.mountPoint + "/" + path, controllers: mount.controllers) : nil
            }
            guard !directories.isEmpty else {
                throw KernelError(code: .invalidState, errno: .noSuchFileOrDirectory, detail: "open cgroup \(path)")
            }
            return V1(directories: directories)
        }

        /// Creates `path` below a hierarchy root, parents included; the last component must be
        /// new. In the cpuset hierarchy each directory on the way whose `cpuset.cpus` or
        /// `cpuset.mems` is empty gets its parent's: v1 creates them empty and then admits no task
        /// (`ENOSPC`). runc's `cpusetEnsureParent` does the same, for existing parents too.
        private static func makeDirectories(
            _ path: String, below root: String, cpuset: Bool
        ) throws(KernelError) -> String {
            var directory = root
            let components = path.split(separator: "/")
            for (index, component) in components.enumerated() {
                let parent = directory
                directory += "/" + component
                let created = try CgroupFile.makeDirectory(directory)
                if !created && index == components.count - 1 {
                    throw KernelError(code: .invalidState, errno: .fileExists, detail: "create cgroup \(directory)")
                }
                guard cpuset else { continue }
                do throws(KernelError) {
                    for file in ["cpuset.cpus", "cpuset.mems"] {
                        if try CgroupFile.read(directory + "/" + file).allSatisfy(\.isWhitespace) {
                            try CgroupFile.write(directory + "/" + file, CgroupFile.read(parent + "/" + file))
                        }
                    }
                } catch {
                    if created { try? CgroupFile.removeDirectory(directory) }
                    throw error
                }
            }
            return directory
        }

        func apply(
            _ changes: CgroupResources, merged: CgroupResources, previous: CgroupResources?
        ) throws(KernelError) {
            if changes.memoryLimit != nil || changes.memorySwapLimit != nil, let memory = directory(for: .memory) {
                try applyMemory(merged, in: memory)
            }
            if let cpu = directory(for: .cpu) {
                if let shares = changes.cpuShares { try CgroupFile.write(cpu + "/cpu.shares", String(shares)) }
                try applyCPUBandwidth(quota: changes.cpuQuota, period: changes.cpuPeriod, in: cpu)
            }
            if let cpuset = directory(for: .cpuset) {
                if let cpus = changes.cpusetCpus { try CgroupFile.write(cpuset + "/cpuset.cpus", cpus) }
                if let mems = changes.cpusetMems { try CgroupFile.write(cpuset + "/cpuset.mems", mems) }
            }
            if let limit = changes.pidsLimit, let pids = directory(for: .pids) {
                try CgroupFile.write(pids + "/pids.max", limit > 0 ? String(limit) : "max")
            }
            if merged.devices != previous?.devices, let devices = directory(for: .devices) {
                try applyDevices(merged.devices, in: devices)
            }
            if changes.blockIOWeight != nil || changes.blockIOThrottles != nil {
                guard let blkio = directory(for: .blkio) else {
                    throw KernelError(code: .unsupported, detail: "limit block I/O: the cgroup v1 blkio controller is not mounted")
                }
                if let weight = changes.blockIOWeight {
                    // blkio.weight came with CFQ, gone since Linux 5.0; BFQ has its own file.
                    let file = try CgroupFile.firstPresent(["blkio.weight", "blkio.bfq.weight"], in: blkio, for: "set the block I/O weight")
                    try CgroupFile.write(file, String(weight))
                }
                for throttle in changes.blockIOThrottles ?? [] {
                    let number = try throttle.device.number()
                    for (rate, file, _) in throttle.rates {
                        guard let rate else { continue }
                        try CgroupFile.writeThrottle(blkio + "/" + file, "\(number) \(rate)", device: throttle.device)
                    }
                }
            }
        }

        /// Writes the memory and memory+swap limits in an order the kernel accepts: it refuses
        /// a memory limit above the memory+swap limit, so when the memory+swap limit grows it goes
        /// first (runc's `setMemoryAndSwap`).
        private func applyMemory(_ resources: CgroupResources, in directory: String) throws(KernelError) {
            let memoryFile = directory + "/memory.limit_in_bytes"
            let swapFile = directory + "/memory.memsw.limit_in_bytes"
            guard let memory = resources.memoryLimit else { return }
            guard let swap = resources.memorySwapLimit else {
                return try CgroupFile.write(memoryFile, String(memory))
            }
            let current = try CgroupFile.parseNumber(CgroupFile.read(memoryFile), file: memoryFile) ?? UInt64.max
            do {
                if swap == -1 || current < UInt64(swap) {
                    try CgroupFile.write(swapFile, String(swap))
                    try CgroupFile.write(memoryFile, String(memory))
                } else {
                    try CgroupFile.write(memoryFile, String(memory))
                    try CgroupFile.write(swapFile, String(swap))
                }
            } catch where error.errno == .noSuchFileOrDirectory {
                throw KernelError(
                    code: .unsupported,
                    detail: "set memory+swap limit: \(swapFile) is missing (boot with swapaccount=1)"
                )
            }
        }

        /// Writes `cpu.cfs_period_us`, then `cpu.cfs_quota_us`. The kernel refuses a shorter
        /// period with `EINVAL` when the current quota over it would exceed the parent's bandwidth;
        /// then the quota goes first (runc's `fs/cpu.go` does the same).
        private func applyCPUBandwidth(quota: Int64?, period: UInt64?, in directory: String) throws(KernelError) {
            let quotaFile = directory + "/cpu.cfs_quota_us"
            let periodFile = directory + "/cpu.cfs_period_us"
            if let period {
                do {
                    try CgroupFile.write(periodFile, String(period))
                } catch where error.errno == .invalidArgument {
                    guard let quota else { throw error }
                    try CgroupFile.write(quotaFile, String(quota))
                    try CgroupFile.write(periodFile, String(period))
                    return
                }
            }
            if let quota { try CgroupFile.write(quotaFile, String(quota)) }
        }

        /// Resets the cgroup to "deny everything" by writing `a` to `devices.deny`, then writes
        /// each rule to `devices.allow`, one rule per write as the kernel parses them. A rule for
        /// both kinds (`a`) is written as a `c` and a `b` rule: the kernel reads a lone `a` in
        /// `devices.allow` as "allow everything" whatever its access letters.
        private func applyDevices(_ rules: [DeviceRule], in directory: String) throws(KernelError) {
            try CgroupFile.write(directory + "/devices.deny", "a")
            for rule in rules {
                let kinds: [DeviceRule.Kind] = rule.kind == .all ? [.character, .block] : [rule.kind]
                for kind in kinds {
                    var single = rule
                    single.kind = kind
                    try CgroupFile.write(directory + "/devices.allow", single.description)
                }
            }
        }

        func attach(pid: Int32) throws(KernelError) {
            for directory in directories {
                try CgroupFile.write(directory.path + "/cgroup.procs", String(pid))
            }
        }

        private var freezerDirectory: String {
            get throws(KernelError) {
                guard let directory = directory(for: .freezer) else {
                    throw KernelError(
                        code: .unsupported, detail: "freeze cgroup: the cgroup v1 freezer controller is not mounted")
                }
                return directory
            }
        }

        /// One step of freezing: asks for `FROZEN` again (the kernel retries tasks it could not
        /// freeze on each write; `cgroup-v1/freezer-subsystem.rst`) and says whether it is done.
        func freeze() throws(KernelError) -> Bool {
            try CgroupFile.write(freezerDirectory + "/freezer.state", "FROZEN")
            return try isFrozen
        }

        func thaw() throws(KernelError) {
            try CgroupFile.write(freezerDirectory + "/freezer.state", "THAWED")
        }

        var isFrozen: Bool {
            get throws(KernelError) {
                try CgroupFile.read(freezerDirectory + "/freezer.state").hasPrefix("FROZEN")
            }
        }

        func killAll() throws(KernelError) {
            try CgroupFile.killProcesses(in: primary)
        }

        func stats() throws(KernelError) -> CgroupStats {
            var stats = CgroupStats()
            if let memory = directory(for: .memory) {
                stats.memoryUsage = try Self.number(memory + "/memory.usage_in_bytes")
                stats.memoryPeak = try Self.number(memory + "/memory.max_usage_in_bytes")
                // "Unlimited" reads as PAGE_COUNTER_MAX pages (0x7FFFFFFFFFFFF000 with 4 KiB
                // pages); no real limit comes near 2^62 bytes.
                stats.memoryLimit = try Self.number(memory + "/memory.limit_in_bytes")
                    .flatMap { $0 >= 1 << 62 ? nil : $0 }
                stats.oomKills = try CgroupFile.readIfPresent(memory + "/memory.oom_control")
                    .flatMap { CgroupFile.parseKeyedValues($0)["oom_kill"] }
            }
            if let cpuacct = directory(for: .cpuacct) {
                stats.cpuUsageNanoseconds = try Self.number(cpuacct + "/cpuacct.usage")
            }
            if let cpu = directory(for: .cpu) {
                stats.cpuPeriod = try Self.number(cpu + "/cpu.cfs_period_us")
                if let text = try CgroupFile.readIfPresent(cpu + "/cpu.cfs_quota_us") {
                    stats.cpuQuota = Int64(text.filter { !$0.isWhitespace }).flatMap { $0 < 0 ? nil : $0 }
                }
            }
            if let pids = directory(for: .pids) {
                stats.pidsCurrent = try Self.number(pids + "/pids.current")
                stats.pidsLimit = try Self.number(pids + "/pids.max")
            }
            if let blkio = directory(for: .blkio),
                let text = try CgroupFile.readIfPresent(blkio + "/blkio.throttle.io_service_bytes")
            {
                (stats.blockReadBytes, stats.blockWriteBytes) = Self.parseServiceBytes(text)
            }
            return stats
        }

        private static func number(_ file: String) throws(KernelError) -> UInt64? {
            try CgroupFile.readIfPresent(file).flatMap { (text) throws(KernelError) in
                try CgroupFile.parseNumber(text, file: file)
            }
        }

        /// Sums the `Read` and `Write` lines of `blkio.throttle.io_service_bytes`
        /// (`8:0 Read 4096`) over all devices.
        static func parseServiceBytes(_ text: String) -> (read: UInt64, write: UInt64) {
            var read: UInt64 = 0
            var write: UInt64 = 0
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: " ")
                guard fields.count == 3, let value = UInt64(fields[2]) else { continue }
                switch fields[1] {
                case "Read": read += value
                case "Write": write += value
                default: break
                }
            }
            return (read, write)
        }

        /// Removes the directory in every hierarchy, the parents staying.
        func remove() throws(KernelError) {
            for directory in directories.reversed() {
                try CgroupFile.removeDirectory(directory.path)
            }
        }
    }
}
