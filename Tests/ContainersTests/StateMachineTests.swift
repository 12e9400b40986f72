import Containers
import ContainerKernel
import Glibc
import Synchronization
import Testing
import TestSupport

/// Many tasks at once on one container: every operation succeeds or throws a typed error, and
/// together they agree on one outcome.
@Suite(.serialized)
struct ContainerStateMachineTests {
    enum Operation: String, Sendable {
        case start, stop, kill, remove, forceRemove, exec, wait
    }

    /// What one operation did: its error's code, or what it returned.
    enum Outcome: Sendable, Equatable {
        case succeeded
        case ended(ContainerKernel.ExitStatus)
        case failed(ContainerError.Code)
    }

    func perform(_ operation: Operation, on container: Container) async -> Outcome {
        do throws(ContainerError) {
            switch operation {
            case .start: try await container.start()
            case .stop: return .ended(try await container.stop(timeout: .milliseconds(100)))
            case .kill: try container.kill()
            case .remove: try await container.remove()
            case .forceRemove: try await container.remove(force: true)
            case .exec:
                let result = try await container.exec(["/bin/true"])
                return .ended(result.status)
            case .wait: return .ended(await container.wait())
            }
            return .succeeded
        } catch {
            return .failed(error.code)
        }
    }

    /// 32 containers started at once from one task group, as a test harness starts its fixtures
    /// or a server meets a burst: each runs its own command to its own exit (the exit code is
    /// its index), their names and ids are distinct, and nothing is left behind.
    @Test func thirtyTwoRunsAtOnceAllSucceedAndLeaveNothing() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let results = try await withThrowingTaskGroup(of: (index: Int, id: String, name: String, status: ExitStatus).self) { group in
            for index in 0..<32 {
                group.addTask {
                    let container = try await runtime.run(busybox(["sh", "-c", "exit \(index)"]))
                    let status = await container.wait()
                    try await container.remove()
                    return (index, container.id, container.name, status)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 32)
        for result in results { #expect(result.status == .exited(Int32(result.index)), "container \(result.index)") }
        #expect(Set(results.map(\.id)).count == 32)
        #expect(Set(results.map(\.name)).count == 32)
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    /// The container's events up to and including the first `last`.
    func actions(
        of container: Container, through last: ContainerEvent.Action,
        from iterator: inout AsyncStream<ContainerEvent>.Iterator
    ) async -> [ContainerEvent.Action] {
        var actions: [ContainerEvent.Action] = []
        while let event = await iterator.next() {
            guard event.containerID == container.id else { continue }
            actions.append(event.action)
            if event.action == last { break }
        }
        return actions
    }

    /// Runs every operation of `operations` in a task of its own, in that order (shuffled by
    /// the callers, so that each round interleaves differently).
    func together(_ operations: [Operation], on container: Container) async -> [(Operation, Outcome)] {
        await withTaskGroup(of: (Operation, Outcome).self) { group in
            for operation in operations {
                group.addTask { (operation, await perform(operation, on: container)) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
    }

    /// Twenty rounds, each on a fresh container: eight starts (with execs and waits) at once
    /// spawn the process once and all succeed; then stops, kills, removes with and without
    /// force, execs, waits and starts at once end with the container removed, every run that
    /// started having died, and nothing left behind.
    @Test(arguments: ContainerLifetime.allCases)
    func concurrentOperationsOnOneContainerAgreeOnOneOutcome(_ lifetime: ContainerLifetime) async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        let events = runtime.events()
        var iterator = events.makeAsyncIterator()
        for round in 0..<20 {
            let container = try await runtime.create(busybox(["/bin/probe", "sleep", "30"]) { $0.lifetime = lifetime })

            // Waits that began before the start return at once; the others end with the run.
            let earlyWaits = Task { await together(Array(repeating: .wait, count: 3), on: container) }
            let starting = await together((Array(repeating: .start, count: 8) + Array(repeating: .exec, count: 3)).shuffled(),
                                          on: container)
            for (operation, outcome) in starting {
                switch operation {
                case .start: #expect(outcome == .succeeded, "round \(round): start: \(outcome)")
                default:
                    // Before the start it is refused; after it, it runs.
                    #expect(outcome == .failed(.invalidState) || outcome == .ended(.exited(0)),
                            "round \(round): exec during the starts: \(outcome)")
                }
            }
            #expect(container.state.status == .running, "round \(round)")
            // The rename's event marks the end of the starts' events: they spawned once.
            try container.rename(to: "hammered-\(lifetime)-\(round)")
            let spawns = await actions(of: container, through: .rename, from: &iterator).filter { $0 == .start }.count
            #expect(spawns == 1, "round \(round): \(spawns) spawns")

            let killed = ContainerKernel.ExitStatus.signaled(.kill, coreDumped: false)
            let ending = await together(
                [.stop, .stop, .kill, .kill, .kill, .remove, .remove, .forceRemove, .forceRemove,
                 .exec, .exec, .exec, .wait, .wait, .wait, .start, .start].shuffled(),
                on: container)
            for (operation, outcome) in ending + (await earlyWaits.value) {
                switch (operation, outcome) {
                case (.forceRemove, .succeeded), (.kill, .succeeded), (.remove, .succeeded), (.start, .succeeded):
                    break
                case (.stop, .ended(killed)), (.wait, .ended(killed)), (.wait, .ended(.exited(0))):
                    break  // SIGTERM does not end the probe as pid 1: the grace period ends in SIGKILL
                case (.exec, .ended(.exited(0))), (.exec, .ended(killed)):
                    break  // killed: it had joined the container when the container's end killed it
                case (.exec, .failed(.kernel)):
                    break  // the container died while the command was joining it
                case (_, .failed(.invalidState)) where operation != .forceRemove:
                    break  // stopped, killed or removed already
                default:
                    Issue.record("round \(round): \(operation): \(outcome)")
                }
            }
            #expect(throws: ContainerError.self) { try runtime.container(container.id) }
            #expect(access(container.directory, F_OK) != 0, "round \(round): the directory is left")

            // Every later start came after the run before it had died, and every run died.
            let lifecycle = await actions(of: container, through: .destroy, from: &iterator).filter { $0 == .start || $0 == .die }
            let startsAfterTheFirst = ending.filter { $0.0 == .start && $0.1 == .succeeded }.count
            #expect(lifecycle.count <= 1 + 2 * startsAfterTheFirst, "round \(round): \(lifecycle)")
            #expect(lifecycle.enumerated().allSatisfy { $0.element == ($0.offset % 2 == 0 ? .die : .start) }
                    && lifecycle.count % 2 == 1, "round \(round): \(lifecycle)")
        }
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }
}
