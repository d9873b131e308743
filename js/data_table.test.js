// Pure logic of the table front end: node --test js/
import { test } from "node:test";
import assert from "node:assert/strict";

import { formatNumber, formatTime, lastPage, moveSelection, nextSort, pageLabel } from "../patientml_widgets/static/data_table.js";

test("page labels and the last page", () => {
  assert.equal(pageLabel(0, 50, 0), "0 of 0");
  assert.equal(pageLabel(0, 50, 120), "1-50 of 120");
  assert.equal(pageLabel(2, 50, 120), "101-120 of 120");
  assert.equal(pageLabel(0, 50, 100000), "1-50 of 100,000");
  assert.equal(lastPage(50, 120), 2);
  assert.equal(lastPage(50, 0), 0);
});

test("clicking a header sorts ascending, then flips", () => {
  assert.deepEqual(nextSort({}, "name"), { key: "name", descending: false });
  assert.deepEqual(nextSort({ key: "name", descending: false }, "name"), { key: "name", descending: true });
  assert.deepEqual(nextSort({ key: "name", descending: true }, "updated"), { key: "updated", descending: false });
});

test("keyboard selection stays within the page", () => {
  assert.equal(moveSelection(-1, 1, 5), 0);
  assert.equal(moveSelection(-1, -1, 5), 4);
  assert.equal(moveSelection(4, 1, 5), 4);
  assert.equal(moveSelection(0, -1, 5), 0);
  assert.equal(moveSelection(2, 1, 0), -1);
});

test("numbers and times read well", () => {
  assert.equal(formatNumber(null), "");
  assert.equal(formatNumber(1234), "1,234");
  assert.equal(formatNumber(0.91234), "0.912");
  assert.equal(formatNumber("n/a"), "n/a");
  assert.equal(formatTime(""), "");
  assert.equal(formatTime("not a time"), "not a time");
  assert.match(formatTime("2026-11-28T14:02:03.123+00:00"), /^2026-11-2[89] \d\d:\d\d$/);
});
