/// A bounded number of runs at once, and a bounded queue of runs waiting for a slot.
///
/// A run that finds every slot taken and the queue full is refused at once (the API answers
/// 429 with Retry-After), so a flood of requests costs the server no memory and no waiting.
actor RunQueue {
    private let slots: Int
    private let maximumWaiting: Int
    private var running = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private let onDepthChange: @Sendable (Int) -> Void

    /// A queue of `slots` runs at once and at most `maximumWaiting` waiting; `onDepthChange`
    /// gets the number waiting whenever it changes.
    init(slots: Int, maximumWaiting: Int, onDepthChange: @escaping @Sendable (Int) -> Void) {
        self.slots = slots
        self.maximumWaiting = maximumWaiting
        self.onDepthChange = onDepthChange
    }

    /// Takes a slot, waiting in the queue for one; `false` when the queue is full.
    func acquire() async -> Bool {
        if running < slots {
            running += 1
            return true
        }
        guard waiting.count < maximumWaiting else { return false }
        await withCheckedContinuation { waiting.append($0); onDepthChange(waiting.count) }
        return true
    }

    /// Gives a slot back: to the first run waiting, else free.
    func release() {
        if waiting.isEmpty {
            running -= 1
        } else {
            waiting.removeFirst().resume()
            onDepthChange(waiting.count)
        }
    }
}
