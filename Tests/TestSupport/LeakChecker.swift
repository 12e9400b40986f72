// The leak checker every container test ends with: a snapshot of what the test process owns
// or can see (mounts, Berth cgroups, fds, child processes, network interfaces, state-dir
// entries) before the test, compared with one after it.

import Glibc

/// What the test process owns or can see at one moment, for finding what a test leaked.
///
/// Take one before the test and compare after it:
///
/// ```swift
/// let before = LeakSnapshot.take()
/// // … run containers …
/// let leaks = await LeakSnapshot.expectClean(since: before)
/// #expect(leaks.isEmpty, "\(leaks)")
/// ```
///
/// Only meaningful when tests do not run concurrently in the same process
/// (`swift test --no-parallel`), since another test's containers look like leaks.
public struct LeakSnapshot: Sendable {
    /// The default state directory tests give Berth: `/var/tmp/berth-tests/state`.
    public static let defaultStateDirectory = TestRootfs.cacheDirectory + "/state"

    /// Targets of fds that the Swift runtime, Dispatch and the test harness open lazily once per
    /// process (epoll, eventfd and timerfd of the Dispatch event loop, the random device), and
    /// Berth's embedded supervisor, made into a memfd at the first detached spawn and kept.
    /// A new fd with one of these targets is not reported; Berth's own fds (pidfds, pipes,
    /// sockets, directories) are.
    public static let lazilyOpenedFDTargets: Set<String> = [
        "anon_inode:[eventpoll]", "anon_inode:[eventfd]", "anon_inode:[timerfd]",
        "/dev/urandom", "/dev/random", "/memfd:berth-supervisor (deleted)",
    ]

    /// Every mount target of this process's mount namespace, with its filesystem type and source
    /// (`"/sys/fs/cgroup/memory (cgroup cgroup)"`), once per mount.
    public var mounts: [String]
    /// Directories named `berth*`, and everything below them, in every cgroup hierarchy mounted
    /// in this namespace (v1 controllers and cgroup2), as absolute paths.
    public var cgroups: Set<String>
    /// This process's open fds and what they point to.
    public var fds: [Int32: String]
    /// Child processes of this process (including zombies): pid to `"comm (state)"`.
    public var children: [Int32: String]
    /// Network interfaces in this process's network namespace.
    public var interfaces: Set<String>
    /// Paths of everything below the state directories.
    public var stateEntries: Set<String>
    /// The state directories that were scanned.
    public var stateDirectories: [String]
    /// Mount points of the cgroup hierarchies that were scanned.
    var cgroupHierarchies: Set<String>

    /// Records the current state.
    ///
    /// Costs a walk of /proc and of the cgroup hierarchies: a few milliseconds.
    ///
    /// - Parameter stateDirectories: Directories whose contents count as Berth state; entries
    ///   that appear below them are reported as leaks. Missing directories are fine.
    /// - Returns: The snapshot.
    public static func take(stateDirectories: [String] = [defaultStateDirectory]) -> LeakSnapshot {
        let mountTable = MountTable.read()
        return LeakSnapshot(
            mounts: mountTable.map { "\($0.target) (\($0.fsType) \($0.source))" },
            cgroups: berthCgroups(mountTable),
            fds: openFDs(),
            children: childProcesses(),
            interfaces: Set((listDirectory("/sys/class/net") ?? []).map(\.name)),
            stateEntries: Set(stateDirectories.flatMap { walk($0, maxDepth: 8) }),
            stateDirectories: stateDirectories,
            cgroupHierarchies: Set(mountTable.filter { $0.fsType == "cgroup" || $0.fsType == "cgroup2" }.map(\.target))
        )
    }

    /// Describes everything that exists now but did not exist in `earlier`.
    ///
    /// New directories below a new directory are folded into it. A new `berth*` cgroup directory
    /// directly below a hierarchy's root (`berth`, `berth-test`) is the shared parent that
    /// Berth creates once and keeps, not a leak; the groups below it are reported.
    ///
    /// - Parameters:
    ///   - earlier: The snapshot taken before the test.
    ///   - ignoredFDTargets: New fds pointing at these are not reported.
    /// - Returns: One human-readable line per leak; empty when nothing leaked.
    public func leaks(
        since earlier: LeakSnapshot, ignoringFDTargets ignoredFDTargets: Set<String> = lazilyOpenedFDTargets
    ) -> [String] {
        var found: [String] = []

        var before: [String: Int] = [:]
        for mount in earlier.mounts { before[mount, default: 0] += 1 }
        for mount in mounts {
            if let count = before[mount], count > 0 {
                before[mount] = count - 1
            } else {
                found.append("mount \(mount) (mount count \(earlier.mounts.count) -> \(mounts.count))")
            }
        }

        let newCgroups = cgroups.subtracting(earlier.cgroups)
        let sharedParents = newCgroups.filter { path in
            path.lastIndex(of: "/").map { cgroupHierarchies.contains(String(path[..<$0])) } ?? false
        }
        for path in Self.topmost(newCgroups.subtracting(sharedParents)) {
            found.append("cgroup \(path)")
        }

        for (fd, target) in fds.sorted(by: { $0.key < $1.key })
        where earlier.fds[fd] != target && !ignoredFDTargets.contains(target) {
            found.append("fd \(fd) -> \(target)")
        }

        for (pid, description) in children.sorted(by: { $0.key < $1.key }) where earlier.children[pid] == nil {
            found.append("child process \(pid) \(description)")
        }

        for name in interfaces.subtracting(earlier.interfaces).sorted() {
            found.append("network interface \(name)")
        }

        for path in Self.topmost(stateEntries.subtracting(earlier.stateEntries)) {
            found.append("state entry \(path)")
        }
        return found
    }

    /// Waits for the system to settle, then reports what leaked since `earlier`.
    ///
    /// Cleanup that is still in flight when a test ends (a child being reaped, a cgroup being
    /// removed) is given time: the comparison is retried every 100 ms until it is clean or
    /// `settle` has passed.
    ///
    /// - Parameters:
    ///   - earlier: The snapshot taken before the test.
    ///   - settle: How long to keep retrying; about 2 s by default.
    /// - Returns: The leaks still present at the end; empty when clean.
    public static func expectClean(since earlier: LeakSnapshot, settle: Duration = .seconds(2)) async -> [String] {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: settle)
        while true {
            let leaks = take(stateDirectories: earlier.stateDirectories).leaks(since: earlier)
            if leaks.isEmpty || clock.now >= deadline || Task.isCancelled { return leaks }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    // MARK: - Collecting

    private static func berthCgroups(_ mountTable: [MountEntry]) -> Set<String> {
        var result: Set<String> = []
        var seen: Set<String> = []
        for mount in mountTable where mount.fsType == "cgroup" || mount.fsType == "cgroup2" {
            guard seen.insert(mount.target).inserted else { continue }
            // Berth's groups sit near the top of a hierarchy; looking 4 levels deep for them
            // keeps the walk cheap on hosts with large trees.
            for dir in walk(mount.target, maxDepth: 4, directoriesOnly: true)
            where lastComponent(dir).hasPrefix("berth") && !isBelowBerth(dir, root: mount.target) {
                result.insert(dir)
                result.formUnion(walk(dir, maxDepth: 16, directoriesOnly: true))
            }
        }
        return result
    }

    private static func isBelowBerth(_ path: String, root: String) -> Bool {
        path.dropFirst(root.count).split(separator: "/").dropLast().contains { $0.hasPrefix("berth") }
    }

    private static func openFDs() -> [Int32: String] {
        var result: [Int32: String] = [:]
        guard let dir = opendir("/proc/self/fd") else { return result }
        defer { closedir(dir) }
        let own = dirfd(dir)
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            guard let fd = Int32(name), fd != own else { continue }
            result[fd] = readLink("/proc/self/fd/\(name)") ?? "?"
        }
        return result
    }

    private static func childProcesses() -> [Int32: String] {
        let me = getpid()
        var result: [Int32: String] = [:]
        for entry in listDirectory("/proc") ?? [] {
            guard let pid = Int32(entry.name), let stat = readTextFile("/proc/\(pid)/stat") else { continue }
            // "pid (comm) state ppid …"; comm may contain spaces and parentheses, so split after
            // the last ')'.
            guard let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { continue }
            let rest = stat[stat.index(after: close)...].split(separator: " ")
            guard rest.count >= 2, Int32(rest[1]) == me else { continue }
            result[pid] = "\(stat[stat.index(after: open)..<close]) (\(rest[0]))"
        }
        return result
    }

    /// All paths below `root` (not `root` itself), at most `maxDepth` levels down.
    private static func walk(_ root: String, maxDepth: Int, directoriesOnly: Bool = false) -> [String] {
        guard maxDepth > 0, let entries = listDirectory(root) else { return [] }
        var result: [String] = []
        for entry in entries where entry.isDirectory || !directoriesOnly {
            let path = root == "/" ? "/" + entry.name : root + "/" + entry.name
            result.append(path)
            if entry.isDirectory {
                result += walk(path, maxDepth: maxDepth - 1, directoriesOnly: directoriesOnly)
            }
        }
        return result
    }

    /// The paths whose parent is not in the set, sorted.
    private static func topmost(_ paths: Set<String>) -> [String] {
        paths.filter { path in
            guard let slash = path.lastIndex(of: "/") else { return true }
            return !paths.contains(String(path[..<slash]))
        }.sorted()
    }

    private static func lastComponent(_ path: String) -> Substring {
        path.split(separator: "/").last ?? ""
    }
}
