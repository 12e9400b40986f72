// The cgroup driver: file formats (pure), then cgroup v1 and cgroup v2 against the kernel.
//
// The build machine is a cgroup v1 hybrid: v1 controllers under /sys/fs/cgroup and a cgroup2
// mount at /sys/fs/cgroup/unified with only hugetlb. The v2 tests run on the machine's v2
// hierarchy when it has one, else on that unified mount, which has the core files
// (cgroup.procs, cgroup.freeze, cgroup.kill, cgroup.events, cpu.stat) but no resource controllers.

import Foundation
import Glibc
import Testing
import TestSupport

@testable import ContainerKernel

@Suite(.serialized)
struct CgroupTests {
    /// Every cgroup these tests create lives below this prefix, removed after each test.
    static let prefix = "berth-cgroup-tests"

    static let machine = try? CgroupHierarchy.detect()
    static var legacy: CgroupHierarchy? { machine?.version == .v1 && getuid() == 0 ? machine : nil }
    static var unified: CgroupHierarchy? {
        guard getuid() == 0 else { return nil }
        if machine?.version == .v2 { return machine }
        let hybrid = "/sys/fs/cgroup/unified"
        return access(hybrid + "/cgroup.procs", F_OK) == 0 ? .unified(at: hybrid) : nil
    }
}

// MARK: - File formats

extension CgroupTests {
    @Suite struct Formats {
        @Test(arguments: [
            (Int64?(50_000), UInt64?(100_000), "50000 100000"),
            (nil, 100_000, "max 100000"),
            (-1, 100_000, "max 100000"),
            (20_000, nil, "20000"),
            (nil, nil, "max"),
        ])
        func cpuMaxIsQuotaThenPeriod(quota: Int64?, period: UInt64?, expected: String) {
            #expect(Cgroup.V2.formatCPUMax(quota: quota, period: period) == expected)
        }

        @Test func cpuMaxParsesMaxAsNoQuota() {
            #expect(Cgroup.V2.parseCPUMax("max 100000\n") == (nil, 100_000))
            #expect(Cgroup.V2.parseCPUMax("50000 100000\n") == (50_000, 100_000))
        }

        @Test func memoryMaxSpellsUnlimitedAsMax() {
            #expect(CgroupFile.limit(-1) == "max")
            #expect(CgroupFile.limit(32 << 20) == "33554432")
        }

        @Test(arguments: [(UInt64(2), UInt64(1)), (1024, 39), (262_144, 10_000)])
        func sharesConvertToWeightWithTheOCIFormula(shares: UInt64, weight: UInt64) {
            #expect(Cgroup.V2.cpuWeight(shares: shares) == weight)
        }

        @Test func swapMaxIsTheTotalLessMemory() {
            #expect(Cgroup.V2.swapMax(memory: 100 << 20, memorySwap: 300 << 20) == String(200 << 20))
            #expect(Cgroup.V2.swapMax(memory: 100 << 20, memorySwap: 100 << 20) == "0")
            #expect(Cgroup.V2.swapMax(memory: 100 << 20, memorySwap: -1) == "max")
            #expect(Cgroup.V2.swapMax(memory: 100 << 20, memorySwap: nil) == nil)
        }

        @Test func keyedFilesParse() {
            let events = CgroupFile.parseKeyedValues("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n")
            #expect(events["oom_kill"] == 1)
            #expect(events["max"] == 12)
            let cpu = CgroupFile.parseKeyedValues("usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n")
            #expect(cpu["usage_usec"] == 123_456)
            let oomControl = CgroupFile.parseKeyedValues("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
            #expect(oomControl["oom_kill"] == 3)
            #expect(CgroupFile.parseKeyedValues("frozen 1\npopulated 0\n")["frozen"] == 1)
        }

        @Test func ioStatSumsDevices() {
            let text = """
                8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0
                8:16 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0

                """
            #expect(Cgroup.V2.parseIOStat(text) == (4097, 8194))
            #expect(Cgroup.V2.parseIOStat("") == (0, 0))
        }

        @Test func blkioServiceBytesSumsDevices() {
            let text = """
                8:0 Read 4096
                8:0 Write 512
                8:0 Sync 0
                8:0 Async 4608
                8:0 Discard 0
                8:0 Total 4608
                8:16 Read 1
                8:16 Write 1
                Total 4610

                """
            #expect(Cgroup.V1.parseServiceBytes(text) == (4097, 513))
        }

        @Test func numbersAndPids() throws {
            #expect(try CgroupFile.parseNumber("max\n", file: "pids.max") == nil)
            #expect(try CgroupFile.parseNumber("42\n", file: "pids.current") == 42)
            #expect(throws: KernelError.self) { try CgroupFile.parseNumber("x\n", file: "pids.current") }
            #expect(try CgroupFile.parsePids("12\n345\n", file: "cgroup.procs") == [12, 345])
        }

        static let hybridMountInfo = """
            31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
            32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
            33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
            35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:7 - cgroup cgroup rw,memory
            36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
            40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
            42 23 0:32 / /mnt/memory\\040copy rw,relatime - cgroup cgroup rw,memory
            """

        @Test func mountInfoSuperOptionsNameTheControllers() throws {
            let mounts = parseMountInfo(Self.hybridMountInfo)
            #expect(mounts.count == 8)
            #expect(mounts[3].superOptions == ["rw", "memory"])
            #expect(mounts[3].fileSystemType == "cgroup")
            #expect(mounts[7].mountPoint == "/mnt/memory copy")
            let hierarchy = try #require(CgroupHierarchy.legacy(from: mounts))
            #expect(hierarchy.version == .v1)
            // Separate cpu and cpuacct, name=systemd and cgroup2 ignored, the second memory
            // mount ignored.
            #expect(
                hierarchy.layout
                    == .legacy([
                        .init(mountPoint: "/sys/fs/cgroup/cpu", controllers: [.cpu]),
                        .init(mountPoint: "/sys/fs/cgroup/cpuacct", controllers: [.cpuacct]),
                        .init(mountPoint: "/sys/fs/cgroup/devices", controllers: [.devices]),
                        .init(mountPoint: "/sys/fs/cgroup/memory", controllers: [.memory]),
                    ]))
        }

        @Test func comountedControllersShareOneDirectory() throws {
            let line = "25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct"
            let hierarchy = try #require(CgroupHierarchy.legacy(from: parseMountInfo(line)))
            let expected = CgroupHierarchy.LegacyMount(
                mountPoint: "/sys/fs/cgroup/cpu,cpuacct", controllers: [.cpu, .cpuacct])
            #expect(hierarchy.layout == .legacy([expected]))
            let pureV2 = "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw"
            #expect(CgroupHierarchy.legacy(from: parseMountInfo(pureV2)) == nil)
        }

        @Test func deviceRulesPrintInTheKernelSyntax() {
            #expect(DeviceRule(.character, major: 1, minor: 3, access: .all).description == "c 1:3 rwm")
            #expect(DeviceRule(.character, major: 136, access: .all).description == "c 136:* rwm")
            #expect(DeviceRule(.block, access: [.mknod]).description == "b *:* m")
            #expect(!DeviceRule.dockerDefaults.contains { $0.kind != .character })
        }

        @Test func deviceProgramHasOneBlockPerRule() {
            // Prologue (6) + "return 0" (2).
            #expect(DeviceFilter.program(for: []).count == 8)
            // Type check, 3 access instructions, major, minor, "return 1".
            let program = DeviceFilter.program(for: [DeviceRule(.character, major: 1, minor: 3, access: [.read])])
            #expect(program.count == 8 + 8)
            // Every check jumps past the block's "return 1" to the final "return 0".
            let jumps = program[6..<12].enumerated().filter { $0.element.code == 0x55 || $0.element.code == 0x5d }
            #expect(jumps.map { Int($0.offset) + 1 + Int($0.element.off) } == [8, 8, 8, 8])
        }

        @Test(arguments: [
            CgroupResources(memoryLimit: 0),
            CgroupResources(memorySwapLimit: 64 << 20),
            CgroupResources(memoryLimit: 64 << 20, memorySwapLimit: 32 << 20),
            CgroupResources(cpuShares: 1),
            CgroupResources(cpuQuota: 10),
            CgroupResources(cpuPeriod: 10),
            CgroupResources(devices: [DeviceRule(.character, major: 5000, access: .all)]),
            CgroupResources(devices: [DeviceRule(.all, major: 1, access: .all)]),
            CgroupResources(devices: [DeviceRule(.character, access: [])]),
        ])
        func invalidResourcesAreRefusedBeforeAnyWrite(resources: CgroupResources) throws {
            let error = #expect(throws: KernelError.self) { try resources.validate() }
            #expect(error?.code == .invalidArgument)
        }

        @Test(arguments: ["", "/berth/x", "berth/../x", "berth//x", "berth/./x", "berth/"])
        func badPathsAreRefused(path: String) {
            let error = #expect(throws: KernelError.self) { try Cgroup.validate(path: path) }
            #expect(error?.code == .invalidArgument)
        }

        @Test func cpusSetsQuotaAndPeriodAsDockerDoes() {
            var resources = CgroupResources()
            resources.cpus = 0.5
            #expect(resources.cpuQuota == 50_000)
            #expect(resources.cpuPeriod == 100_000)
            #expect(resources.cpus == 0.5)
            resources.cpus = nil
            #expect(resources.cpuQuota == nil && resources.cpuPeriod == nil)
        }

        @Test(arguments: [("/dev/vda", "/dev/vda"), ("8:0", "8:0"), ("259:12", "259:12")])
        func blockDevicesAreNamedByPathOrNumber(_ text: String, _ description: String) throws {
            #expect(try BlockDevice(parsing: text).description == description)
            #expect(try BlockDevice(parsing: "8:0") == BlockDevice(major: 8, minor: 0))
        }

        @Test(arguments: ["", "8", "a:b", "8:0:1", "-1:0", "dev/sda"])
        func otherDeviceNamesAreRefused(_ text: String) {
            let error = #expect(throws: KernelError.self) { try BlockDevice(parsing: text) }
            #expect(error?.code == .invalidArgument)
        }

        /// runc's `ConvertBlkIOToIOWeightValue`: Docker's 10...1000 onto `io.weight`'s 1...10000.
        @Test func blkioWeightMapsOntoIOWeight() {
            #expect(Cgroup.V2.ioWeight(blkioWeight: 10) == 1)
            #expect(Cgroup.V2.ioWeight(blkioWeight: 300) == 2930)
            #expect(Cgroup.V2.ioWeight(blkioWeight: 1000) == 10000)
        }

        @Test func blockIOWeightOutsideDockersBoundsIsRefused() {
            for weight: UInt16 in [0, 9, 1001] {
                let error = #expect(throws: KernelError.self) { try CgroupResources(blockIOWeight: weight).validate() }
                #expect(error?.code == .invalidArgument)
            }
        }

        /// An update changes the rates it names on its devices and keeps everything else; the
        /// limits survive a round trip through a container's record.
        @Test func throttlesMergeDeviceByDeviceAndRoundTrip() throws {
            let disk = BlockDevice(path: "/dev/vda")
            let other = BlockDevice(major: 8, minor: 16)
            let current = CgroupResources(blockIOWeight: 500, blockIOThrottles: [
                BlockIOThrottle(device: disk, readBytesPerSecond: 1 << 20, writeBytesPerSecond: 2 << 20),
            ])
            let merged = current.merging(CgroupResources(blockIOThrottles: [
                BlockIOThrottle(device: disk, readBytesPerSecond: 0, writeOperationsPerSecond: 50),
                BlockIOThrottle(device: other, readOperationsPerSecond: 10),
            ]))
            #expect(merged.blockIOWeight == 500)
            #expect(merged.blockIOThrottles == [
                BlockIOThrottle(device: disk, readBytesPerSecond: 0, writeBytesPerSecond: 2 << 20, writeOperationsPerSecond: 50),
                BlockIOThrottle(device: other, readOperationsPerSecond: 10),
            ])
            #expect(merged.merging(CgroupResources()) == merged)
            let json = try JSONEncoder().encode(merged)
            #expect(String(decoding: json, as: UTF8.self).contains(#""device":"8:16""#))
            #expect(try JSONDecoder().decode(CgroupResources.self, from: json) == merged)
        }
    }
}

// MARK: - Helpers

extension CgroupTests {
    /// Creates a cgroup below ``prefix``, runs `body`, then kills what is left, destroys the
    /// cgroup and the prefix, and checks no directory remains, even when `body` throws.
    static func withCgroup(
        _ resources: CgroupResources = CgroupResources(), in hierarchy: CgroupHierarchy,
        _ body: (Cgroup) async throws -> Void
    ) async throws {
        let path = "\(prefix)/\(UUID().uuidString.prefix(8).lowercased())"
        defer { removePrefix(in: hierarchy) }
        let cgroup = try Cgroup.create(path, resources: resources, in: hierarchy)
        do {
            try await body(cgroup)
        } catch {
            try? cgroup.killAll()
            try? cgroup.destroy()
            throw error
        }
        try cgroup.killAll()
        try cgroup.destroy()
        try cgroup.destroy()  // idempotent
        for root in hierarchy.roots {
            #expect(access(root + "/" + path, F_OK) != 0, "\(root)/\(path) was left behind")
        }
    }

    static func removePrefix(in hierarchy: CgroupHierarchy) {
        for root in hierarchy.roots { rmdir(root + "/" + prefix) }
    }

    /// Starts `/bin/sleep 30`; the caller stops it with ``stop(_:)``.
    static func sleeper() throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sleep")
        process.arguments = ["30"]
        try process.run()
        return process
    }

    static func stop(_ process: Process) {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// 32 MiB of memory and no swap.
    static let thirtyTwoMegabytes = CgroupResources(memoryLimit: 32 << 20, memorySwapLimit: 32 << 20)

    /// Runs a process that allocates 64 MiB in `cgroup` (joined through its `procs` file) and
    /// expects the kernel's OOM killer to end it and the cgroup's stats to count it.
    static func expectOOMKill(in cgroup: Cgroup, procs: String) throws {
        let run = try shell("echo $$ > \(procs) && exec /usr/bin/python3 -c 'x = b\"x\" * (64 << 20)'")
        #expect(run.reason == .uncaughtSignal)
        #expect(run.status == SIGKILL)
        #expect(try #require(cgroup.stats().oomKills) >= 1)
    }

    /// Runs `/bin/sh -c script` to the end, returning its status and standard error.
    static func shell(_ script: String) throws -> (reason: Process.TerminationReason, status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let data = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationReason, process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func read(_ path: String) throws -> String {
        try CgroupFile.read(path).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// From a shell moved into the cgroup of `procs`: `mknod` of a block device is refused and
    /// one of `/dev/null`'s numbers is allowed. Returns the block node's path for the caller to
    /// retry and unlink.
    static func expectBlockMknodRefusedAndNullAllowed(procs: String) throws -> String {
        let block = scratchNode()
        let refused = try shell("echo $$ > \(procs) && exec /usr/bin/mknod \(block) b 8 0")
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("Operation not permitted"))
        let null = scratchNode()
        defer { unlink(null) }
        let allowed = try shell("echo $$ > \(procs) && exec /usr/bin/mknod \(null) c 1 3")
        #expect(allowed.status == 0, "\(allowed.stderr)")
        return block
    }

    /// A path for a device node that does not exist yet.
    static func scratchNode() -> String {
        "/tmp/berth-cgroup-node-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    }
}

// MARK: - Block I/O limits

extension CgroupTests {
    /// Limits for the throttling tests: 1 MiB/s each way on the scratch disk, named by path.
    static func throttled(_ disk: String, weighted: Bool = true) -> CgroupResources {
        CgroupResources(blockIOWeight: weighted ? 300 : nil, blockIOThrottles: [
            BlockIOThrottle(device: BlockDevice(path: disk), readBytesPerSecond: 1 << 20, writeBytesPerSecond: 1 << 20),
        ])
    }

    /// Reads and then writes with `O_DIRECT` through the throttled cgroup for two seconds each
    /// (`dd` killed by `timeout`), and checks what the cgroup's counters say moved: about two
    /// seconds' worth of the 1 MiB/s limit (at most twice that), not the 32 MiB `dd` asks for.
    ///
    /// - Returns: The bytes read and written, for the record.
    @discardableResult
    static func expectThrottledIO(in cgroup: Cgroup, procs: String) throws -> (read: UInt64, written: UInt64) {
        let file = "/var/tmp/berth-cgroup-io-\(getpid())"
        defer { unlink(file) }
        // Written outside the cgroup: the read below must have something on disk to read.
        let fill = try shell("dd if=/dev/zero of=\(file) bs=1M count=32 oflag=direct status=none")
        #expect(fill.status == 0, "\(fill.stderr)")
        let before = try cgroup.stats()
        let read = try shell(
            "echo $$ > \(procs) && exec timeout -s KILL 2 dd if=\(file) of=/dev/null bs=64k iflag=direct status=none")
        let afterRead = try cgroup.stats()
        let write = try shell(
            "echo $$ > \(procs) && exec timeout -s KILL 2 dd if=/dev/zero of=\(file) bs=64k count=512 oflag=direct conv=notrunc status=none")
        let afterWrite = try cgroup.stats()
        // SIGKILL: the test runner's blocked signals are inherited, so dd would not see a
        // SIGTERM. Having killed dd, as a throttled dd needs, timeout kills itself the same way.
        for run in [read, write] {
            #expect(run.reason == .uncaughtSignal && run.status == SIGKILL, "\(run.reason) \(run.status) \(run.stderr)")
        }
        let bytesRead = (afterRead.blockReadBytes ?? 0) - (before.blockReadBytes ?? 0)
        let bytesWritten = (afterWrite.blockWriteBytes ?? 0) - (afterRead.blockWriteBytes ?? 0)
        let bound: UInt64 = 2 * 2 << 20  // two seconds at 1 MiB/s, twice over
        #expect(bytesRead > 0 && bytesRead <= bound, "read \(bytesRead) bytes in 2 s at 1 MiB/s")
        #expect(bytesWritten > 0 && bytesWritten <= bound, "wrote \(bytesWritten) bytes in 2 s at 1 MiB/s")
        print("throttled to 1 MiB/s: read \(bytesRead) bytes, wrote \(bytesWritten) bytes in 2 s")
        return (bytesRead, bytesWritten)
    }
}

extension CgroupTests {
    /// A disk that does not exist, a missing path and a character device, each refused with a
    /// typed error that names it, before anything is left behind.
    static func expectMissingDisksRefused(in hierarchy: CgroupHierarchy) {
        let refused: [(BlockDevice, String)] = [
            (BlockDevice(major: 4095, minor: 4095), "4095:4095: no such disk"),
            (BlockDevice(path: "/nonexistent/disk"), "block device /nonexistent/disk"),
            (BlockDevice(path: "/dev/null"), "/dev/null: not a block device"),
        ]
        for (device, message) in refused {
            let path = "\(prefix)/\(UUID().uuidString.prefix(8).lowercased())"
            let resources = CgroupResources(blockIOThrottles: [BlockIOThrottle(device: device, readBytesPerSecond: 1 << 20)])
            let error = #expect(throws: KernelError.self) { try Cgroup.create(path, resources: resources, in: hierarchy) }
            #expect(error?.code == .invalidArgument, "\(device)")
            #expect(error?.description.contains(message) == true, "\(error?.description ?? "-")")
            #expect(hierarchy.roots.allSatisfy { access($0 + "/" + path, F_OK) != 0 }, "\(path) is left behind")
        }
        removePrefix(in: hierarchy)
    }
}

// MARK: - cgroup v1

extension CgroupTests {
    @Suite(.enabled(if: CgroupTests.legacy != nil, "needs root on a cgroup v1 machine"))
    struct V1 {
        let hierarchy = CgroupTests.legacy ?? .unified(at: "/nonexistent")

        func directory(_ cgroup: Cgroup, _ controller: CgroupController) throws -> String {
            guard let v1 = cgroup.backend as? Cgroup.V1, let directory = v1.directory(for: controller) else {
                throw KernelError(code: .unsupported, detail: "no \(controller) directory")
            }
            return directory
        }

        @Test func detectionFindsTheV1Controllers() throws {
            guard case .legacy(let mounts) = hierarchy.layout else {
                Issue.record("expected a v1 layout")
                return
            }
            let controllers = mounts.reduce(into: Set<CgroupController>()) { $0.formUnion($1.controllers) }
            #expect(controllers.isSuperset(of: [.cpu, .cpuacct, .cpuset, .memory, .devices, .freezer, .blkio, .pids]))
            // The hybrid's unified mount is not used for resource control.
            #expect(!hierarchy.roots.contains("/sys/fs/cgroup/unified"))
        }

        @Test func limitsAreWrittenAndUpdated() async throws {
            var resources = CgroupResources(
                memoryLimit: 64 << 20, cpuShares: 512, cpusetCpus: "0", cpusetMems: "0", pidsLimit: 64)
            resources.cpus = 0.5
            try await CgroupTests.withCgroup(resources, in: hierarchy) { cgroup in
                #expect(cgroup.version == .v1)
                #expect(cgroup.directoryDescriptor == nil)
                let memory = try directory(cgroup, .memory)
                let cpu = try directory(cgroup, .cpu)
                #expect(try CgroupTests.read(memory + "/memory.limit_in_bytes") == "67108864")
                #expect(try CgroupTests.read(cpu + "/cpu.shares") == "512")
                #expect(try CgroupTests.read(cpu + "/cpu.cfs_quota_us") == "50000")
                #expect(try CgroupTests.read(cpu + "/cpu.cfs_period_us") == "100000")
                #expect(try CgroupTests.read(directory(cgroup, .cpuset) + "/cpuset.cpus") == "0")
                #expect(try CgroupTests.read(directory(cgroup, .cpuset) + "/cpuset.mems") == "0")
                #expect(try CgroupTests.read(directory(cgroup, .pids) + "/pids.max") == "64")
                let devices = try CgroupTests.read(directory(cgroup, .devices) + "/devices.list").split(separator: "\n")
                #expect(devices.contains("c 1:3 rwm"))
                #expect(devices.contains("c *:* m"))
                #expect(!devices.contains { $0.hasPrefix("b") || $0.hasPrefix("a") })

                let stats = try cgroup.stats()
                #expect(stats.cpuQuota == 50_000)
                #expect(stats.cpuPeriod == 100_000)
                #expect(stats.memoryLimit == 64 << 20)
                #expect(stats.pidsLimit == 64)
                #expect(stats.pidsCurrent == 0)

                // docker update: raising memory past no swap limit, dropping the pids limit.
                try cgroup.update(
                    CgroupResources(memoryLimit: 128 << 20, pidsLimit: -1, devices: cgroup.resources.devices))
                #expect(try CgroupTests.read(memory + "/memory.limit_in_bytes") == "134217728")
                #expect(try CgroupTests.read(directory(cgroup, .pids) + "/pids.max") == "max")
                #expect(try cgroup.stats().pidsLimit == nil)
                #expect(cgroup.resources.cpuQuota == 50_000)
                try cgroup.update(CgroupResources(memoryLimit: 64 << 20, memorySwapLimit: 96 << 20))
                #expect(try CgroupTests.read(memory + "/memory.memsw.limit_in_bytes") == String(96 << 20))
                try cgroup.update(CgroupResources(memoryLimit: 256 << 20, memorySwapLimit: 512 << 20))
                #expect(try CgroupTests.read(memory + "/memory.limit_in_bytes") == String(256 << 20))

                // A value the kernel refuses comes back naming the file.
                let error = #expect(throws: KernelError.self) { try cgroup.update(CgroupResources(cpusetCpus: "zero")) }
                #expect(error?.errno == .invalidArgument)
                #expect(error?.description == "write \(try directory(cgroup, .cpuset))/cpuset.cpus: invalid argument")
            }
        }

        @Test func creatingAnExistingCgroupFails() async throws {
            try await CgroupTests.withCgroup(in: hierarchy) { cgroup in
                let error = #expect(throws: KernelError.self) {
                    try Cgroup.create(cgroup.path, resources: CgroupResources(), in: hierarchy)
                }
                #expect(error?.code == .invalidState)
                #expect(error?.description.contains(cgroup.path) == true)
            }
        }

        @Test func attachedProcessIsCountedFrozenThawedAndKilled() async throws {
            try await CgroupTests.withCgroup(in: hierarchy) { cgroup in
                let sleeper = try CgroupTests.sleeper()
                defer { CgroupTests.stop(sleeper) }
                let pid = sleeper.processIdentifier
                try cgroup.attach(pid: pid)

                let membership = try CgroupTests.read("/proc/\(pid)/cgroup")
                #expect(membership.contains("memory:/\(cgroup.path)"))
                #expect(membership.contains("freezer:/\(cgroup.path)"))
                #expect(try cgroup.processes() == [pid])
                #expect(try cgroup.stats().pidsCurrent == 1)

                try await cgroup.freeze()
                #expect(try cgroup.isFrozen)
                #expect(try CgroupTests.read(directory(cgroup, .freezer) + "/freezer.state") == "FROZEN")
                try await cgroup.thaw()
                #expect(try !cgroup.isFrozen)
                #expect(try CgroupTests.read(directory(cgroup, .freezer) + "/freezer.state") == "THAWED")

                try cgroup.killAll()
                sleeper.waitUntilExit()
                #expect(sleeper.terminationReason == .uncaughtSignal)
                #expect(sleeper.terminationStatus == SIGKILL)
                #expect(try cgroup.processes().isEmpty)
            }
        }

        @Test func killAllKillsAFrozenCgroup() async throws {
            try await CgroupTests.withCgroup(in: hierarchy) { cgroup in
                let sleeper = try CgroupTests.sleeper()
                defer { CgroupTests.stop(sleeper) }
                try cgroup.attach(pid: sleeper.processIdentifier)
                try await cgroup.freeze()
                try cgroup.killAll()
                sleeper.waitUntilExit()
                #expect(sleeper.terminationStatus == SIGKILL)
                #expect(try !cgroup.isFrozen)
            }
        }

        @Test func processOverTheMemoryLimitIsOOMKilled() async throws {
            try await CgroupTests.withCgroup(CgroupTests.thirtyTwoMegabytes, in: hierarchy) { cgroup in
                try CgroupTests.expectOOMKill(in: cgroup, procs: try directory(cgroup, .memory) + "/cgroup.procs")
            }
        }

        @Test func blockDeviceMknodIsRefusedAndNullIsAllowed() async throws {
            try await CgroupTests.withCgroup(in: hierarchy) { cgroup in
                let procs = try directory(cgroup, .devices) + "/cgroup.procs"
                let block = try CgroupTests.expectBlockMknodRefusedAndNullAllowed(procs: procs)
                defer { unlink(block) }
            }
        }

        @Test func staleFrozenCgroupsAreKilledAndRemoved() async throws {
            let stale = try Cgroup.create(
                "\(CgroupTests.prefix)/stale/leaf", resources: CgroupResources(), in: hierarchy)
            defer { CgroupTests.removePrefix(in: hierarchy) }
            let sleeper = try CgroupTests.sleeper()
            defer { CgroupTests.stop(sleeper) }
            try stale.attach(pid: sleeper.processIdentifier)
            // A runtime killed while the container was paused leaves it frozen.
            try await stale.freeze()
            try Cgroup.removeStale("\(CgroupTests.prefix)/stale", in: hierarchy)
            sleeper.waitUntilExit()
            #expect(sleeper.terminationStatus == SIGKILL)
            for root in hierarchy.roots {
                #expect(access("\(root)/\(CgroupTests.prefix)/stale", F_OK) != 0)
                #expect(access("\(root)/\(CgroupTests.prefix)", F_OK) == 0)
            }
            try stale.destroy()  // already gone: nothing to do
        }

        /// The rates reach `blkio.throttle.*`, the weight `blkio.weight` or `blkio.bfq.weight`,
        /// and reads and writes through the cgroup move at about the limit; an update lifts one
        /// rate, adds another and keeps the rest.
        @Test func blockIOLimitsAreWrittenAndThrottleTheDisk() async throws {
            guard let disk = scratchDisk() else { return }
            // v1 weighs only under CFQ or BFQ: with mq-deadline or none (the 6.1 guest's disk)
            // a cgroup's blkio has no weight file, and a weight is refused by name.
            let refusal = Result {
                try Cgroup.create("\(CgroupTests.prefix)/weighted", resources: CgroupTests.throttled(disk.path), in: hierarchy)
                    .destroy()
            }.failure.map { "\($0)" }
            let weighted = refusal == nil
            #expect(refusal?.contains("no blkio.weight or blkio.bfq.weight") ?? true, "\(refusal ?? "")")
            try await CgroupTests.withCgroup(CgroupTests.throttled(disk.path, weighted: weighted), in: hierarchy) { cgroup in
                let blkio = try directory(cgroup, .blkio)
                func file(_ name: String) throws -> String { try CgroupTests.read(blkio + "/" + name) }
                #expect(try file("blkio.throttle.read_bps_device") == "\(disk.number) 1048576")
                #expect(try file("blkio.throttle.write_bps_device") == "\(disk.number) 1048576")
                let weight = ["blkio.weight", "blkio.bfq.weight"].first { access(blkio + "/" + $0, F_OK) == 0 }
                #expect(try weight.map(file)?.hasSuffix("300") ?? true)
                try CgroupTests.expectThrottledIO(in: cgroup, procs: blkio + "/cgroup.procs")

                try cgroup.update(CgroupResources(blockIOThrottles: [
                    BlockIOThrottle(device: BlockDevice(path: disk.path), readBytesPerSecond: 0, readOperationsPerSecond: 100),
                ]))
                #expect(try file("blkio.throttle.read_bps_device") == "")
                #expect(try file("blkio.throttle.read_iops_device") == "\(disk.number) 100")
                #expect(try file("blkio.throttle.write_bps_device") == "\(disk.number) 1048576")
                #expect(cgroup.resources.blockIOThrottles == [
                    BlockIOThrottle(device: BlockDevice(path: disk.path), readBytesPerSecond: 0, writeBytesPerSecond: 1 << 20,
                                    readOperationsPerSecond: 100),
                ])
            }
        }

        @Test func aMissingDiskIsATypedError() {
            CgroupTests.expectMissingDisksRefused(in: hierarchy)
        }
    }
}

// MARK: - cgroup v2

extension CgroupTests {
    @Suite(.enabled(if: CgroupTests.unified != nil, "needs root and a cgroup2 mount"))
    struct V2 {
        let hierarchy = CgroupTests.unified ?? .unified(at: "/nonexistent")

        var root: String { hierarchy.roots.first ?? "/nonexistent" }

        @Test func attachedProcessIsFrozenThawedAndKilled() async throws {
            try await CgroupTests.withCgroup(in: hierarchy) { cgroup in
                #expect(cgroup.version == .v2)
                let descriptor = try #require(cgroup.directoryDescriptor)
                #expect(fcntl(descriptor, F_GETFD) & FD_CLOEXEC != 0)

                let sleeper = try CgroupTests.sleeper()
                defer { CgroupTests.stop(sleeper) }
                let pid = sleeper.processIdentifier
                try cgroup.attach(pid: pid)
                #expect(try CgroupTests.read("/proc/\(pid)/cgroup").contains("0::/\(cgroup.path)"))
                #expect(try cgroup.processes() == [pid])

                try await cgroup.freeze()
                #expect(try cgroup.isFrozen)
                #expect(try CgroupTests.read("\(root)/\(cgroup.path)/cgroup.events").contains("frozen 1"))
                try await cgroup.thaw()
                #expect(try !cgroup.isFrozen)

                let stats = try cgroup.stats()
                #expect(stats.cpuUsageNanoseconds != nil)

                try cgroup.killAll()
                sleeper.waitUntilExit()
                #expect(sleeper.terminationReason == .uncaughtSignal)
                #expect(sleeper.terminationStatus == SIGKILL)
            }
        }

        @Test func aLimitWithoutItsControllerIsUnsupported() throws {
            // Only meaningful where the hierarchy lacks memory, as the hybrid's unified mount does.
            guard try !CgroupTests.read(root + "/cgroup.controllers").contains("memory") else { return }
            defer { CgroupTests.removePrefix(in: hierarchy) }
            let path = "\(CgroupTests.prefix)/no-memory"
            let error = #expect(throws: KernelError.self) {
                try Cgroup.create(path, resources: CgroupResources(memoryLimit: 64 << 20), in: hierarchy)
            }
            #expect(error?.code == .unsupported)
            #expect(error?.description.contains("memory") == true)
            #expect(access("\(root)/\(path)", F_OK) != 0)
        }

        @Test func creatingAnExistingCgroupFails() async throws {
            try await CgroupTests.withCgroup(in: hierarchy) { cgroup in
                let error = #expect(throws: KernelError.self) {
                    try Cgroup.create(cgroup.path, resources: CgroupResources(), in: hierarchy)
                }
                #expect(error?.code == .invalidState)
            }
        }

        /// Whether the hierarchy has the resource controllers: the build machine's unified mount
        /// has none, the pure cgroup v2 guest of `make test-vm` (Debian 12, 6.1) has them all.
        var hasControllers: Bool {
            let offered = (try? CgroupTests.read(root + "/cgroup.controllers"))?.split(separator: " ") ?? []
            return ["memory", "cpu", "pids"].allSatisfy { offered.contains(Substring($0)) }
        }

        @Test func limitsAreWrittenAndUpdatedOnTheControllers() async throws {
            guard hasControllers else { return }
            var resources = CgroupResources(memoryLimit: 64 << 20, memorySwapLimit: 128 << 20, cpuShares: 512,
                                            pidsLimit: 20)
            resources.cpus = 0.5
            try await CgroupTests.withCgroup(resources, in: hierarchy) { cgroup in
                let directory = "\(root)/\(cgroup.path)"
                func file(_ name: String) throws -> String { try CgroupTests.read(directory + "/" + name) }
                #expect(try file("memory.max") == String(64 << 20))
                #expect(try file("memory.swap.max") == String(64 << 20))  // swap alone: the total less memory
                #expect(try file("cpu.weight") == "20")
                #expect(try file("cpu.max") == "50000 100000")
                #expect(try file("pids.max") == "20")
                let stats = try cgroup.stats()
                #expect(stats.memoryLimit == 64 << 20)
                #expect(stats.cpuQuota == 50_000 && stats.cpuPeriod == 100_000)
                #expect(stats.pidsLimit == 20 && stats.pidsCurrent == 0)

                // docker update: memory up (swap follows the total), the pids limit dropped,
                // the CPU quota left as it was.
                try cgroup.update(CgroupResources(memoryLimit: 96 << 20, pidsLimit: -1))
                #expect(try file("memory.max") == String(96 << 20))
                #expect(try file("memory.swap.max") == String(32 << 20))
                #expect(try file("pids.max") == "max")
                #expect(try file("cpu.max") == "50000 100000")
                try cgroup.update(CgroupResources(cpuShares: 1024))
                #expect(try file("cpu.weight") == "39")
            }
        }

        @Test func processOverTheMemoryLimitIsOOMKilledOnTheControllers() async throws {
            guard hasControllers else { return }
            try await CgroupTests.withCgroup(CgroupTests.thirtyTwoMegabytes, in: hierarchy) { cgroup in
                try CgroupTests.expectOOMKill(in: cgroup, procs: "\(root)/\(cgroup.path)/cgroup.procs")
            }
        }

        /// Direct writes to a block device are charged to the writer's cgroup (`io.stat`), as
        /// ``Cgroup/stats()`` reports them. Needs `/var/tmp` on a block device, as the scratch
        /// disk of `make test-vm` is (tmpfs before 6.6 takes no `O_DIRECT`).
        @Test func blockWritesAreCountedOnTheControllers() async throws {
            guard hasControllers, try CgroupTests.read(root + "/cgroup.controllers").contains("io") else { return }
            let mounts = parseMountInfo(try CgroupFile.read("/proc/self/mountinfo"))
            guard mounts.last(where: { $0.mountPoint == "/var/tmp" })?.fileSystemType == "ext4" else { return }
            try await CgroupTests.withCgroup(in: hierarchy) { cgroup in
                let file = "/var/tmp/berth-cgroup-io-\(getpid())"
                defer { unlink(file) }
                let run = try CgroupTests.shell(
                    "echo $$ > \(root)/\(cgroup.path)/cgroup.procs && exec dd if=/dev/zero of=\(file) bs=1M count=4 oflag=direct status=none")
                #expect(run.status == 0, "\(run.stderr)")
                let written = try cgroup.stats().blockWriteBytes ?? 0
                #expect(written >= 4 << 20, "\(written) bytes")
            }
        }

        /// Berth embedded in a process that sits in the cgroup it would create below (the root of
        /// a container's cgroup namespace, a systemd unit): cgroup v2 hands controllers down only
        /// from a cgroup without processes, and the error says so and what to do.
        @Test func aParentHoldingProcessesGetsAClearError() async throws {
            guard hasControllers else { return }
            try await CgroupTests.withCgroup(in: hierarchy) { parent in
                let sleeper = try CgroupTests.sleeper()
                defer { CgroupTests.stop(sleeper) }
                try parent.attach(pid: sleeper.processIdentifier)
                let error = #expect(throws: KernelError.self) {
                    try Cgroup.create(parent.path + "/child", resources: CgroupResources(), in: hierarchy)
                }
                #expect(error?.code == .invalidState)
                #expect(error?.description.contains("it holds processes") == true, "\(error?.description ?? "-")")
                #expect(access("\(root)/\(parent.path)/child", F_OK) != 0)
            }
        }

        /// A second process adopts a running cgroup (a detached container's) and controls it.
        @Test func anExistingCgroupIsAdoptedAndControlled() async throws {
            try await CgroupTests.withCgroup(in: hierarchy) { cgroup in
                let sleeper = try CgroupTests.sleeper()
                defer { CgroupTests.stop(sleeper) }
                try cgroup.attach(pid: sleeper.processIdentifier)
                let adopted = try Cgroup.existing(cgroup.path, resources: cgroup.resources, in: hierarchy)
                #expect(adopted.version == .v2)
                #expect(try adopted.processes() == [sleeper.processIdentifier])
                try await adopted.freeze()
                #expect(try cgroup.isFrozen)
                try await adopted.thaw()
                try adopted.killAll()
                sleeper.waitUntilExit()
                #expect(sleeper.terminationStatus == SIGKILL)
            }
        }

        @Test func deviceProgramRefusesBlockMknodUntilUpdated() async throws {
            try await CgroupTests.withCgroup(in: hierarchy) { cgroup in
                let procs = "\(root)/\(cgroup.path)/cgroup.procs"
                let block = try CgroupTests.expectBlockMknodRefusedAndNullAllowed(procs: procs)
                defer { unlink(block) }

                // Replacing the program (attach the new one, detach the old) takes effect.
                var resources = cgroup.resources
                resources.devices.append(DeviceRule(.block, major: 8, minor: 0, access: .mknod))
                try cgroup.update(resources)
                let granted = try CgroupTests.shell("echo $$ > \(procs) && exec /usr/bin/mknod \(block) b 8 0")
                #expect(granted.status == 0, "\(granted.stderr)")
            }
        }

        var hasIOController: Bool {
            ((try? CgroupTests.read(root + "/cgroup.controllers"))?.split(separator: " ") ?? []).contains("io")
        }

        /// The rates reach `io.max`, the weight `io.weight` (converted) or `io.bfq.weight`, and
        /// reads and writes through the cgroup move at about the limit; an update lifts one rate,
        /// adds another and keeps the rest.
        @Test func blockIOLimitsAreWrittenAndThrottleTheDiskOnTheControllers() async throws {
            guard hasIOController, let disk = scratchDisk() else { return }
            try await CgroupTests.withCgroup(CgroupTests.throttled(disk.path), in: hierarchy) { cgroup in
                let directory = "\(root)/\(cgroup.path)"
                func file(_ name: String) throws -> String { try CgroupTests.read(directory + "/" + name) }
                #expect(try file("io.max") == "\(disk.number) rbps=1048576 wbps=1048576 riops=max wiops=max")
                if access(directory + "/io.weight", F_OK) == 0 {
                    #expect(try file("io.weight") == "default 2930")
                } else {
                    #expect(try file("io.bfq.weight") == "default 300")
                }
                try CgroupTests.expectThrottledIO(in: cgroup, procs: directory + "/cgroup.procs")

                try cgroup.update(CgroupResources(blockIOThrottles: [
                    BlockIOThrottle(device: BlockDevice(path: disk.path), readBytesPerSecond: 0, readOperationsPerSecond: 100),
                ]))
                #expect(try file("io.max") == "\(disk.number) rbps=max wbps=1048576 riops=100 wiops=max")
            }
        }

        @Test func aMissingDiskIsATypedErrorOnTheControllers() {
            guard hasIOController else { return }
            CgroupTests.expectMissingDisksRefused(in: hierarchy)
        }

        /// The hybrid's unified mount has no io controller: asking for a block I/O limit there
        /// names it, and leaves nothing behind.
        @Test func blockIOLimitsWithoutTheIOControllerAreATypedError() {
            guard !hasIOController else { return }
            let path = "\(CgroupTests.prefix)/\(UUID().uuidString.prefix(8).lowercased())"
            let error = #expect(throws: KernelError.self) {
                try Cgroup.create(path, resources: CgroupResources(blockIOWeight: 500), in: hierarchy)
            }
            #expect(error?.code == .unsupported)
            #expect(error?.description.contains("controller io is not available") == true, "\(error?.description ?? "-")")
            #expect(access("\(root)/\(path)", F_OK) != 0)
            CgroupTests.removePrefix(in: hierarchy)
        }
    }
}

extension Result {
    /// The error, or `nil` on success.
    var failure: Failure? {
        if case .failure(let error) = self { error } else { nil }
    }
}
