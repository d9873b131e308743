// Poller: asks the kernel every few seconds, while shown, whether the project changed.
// @ts-check

/**
 * The Poller traits (patientml_widgets/widgets/poller.py).
 * @typedef Model
 * @prop {number} seconds between two polls (at least 0.5)
 */

/** @type {import("@anywidget/types").AnyWidget<Model>} */
export default {
  render({ model, el }) {
    const timer = setInterval(() => {
      if (el.isConnected) model.send({ kind: "poll" });
    }, Math.max(0.5, model.get("seconds")) * 1000);
    return () => clearInterval(timer);
  },
};
