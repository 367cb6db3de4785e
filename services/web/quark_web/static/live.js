/* Quark live socket (signed-in pages). The page never sees the person's token: it asks the web module for
   a one-time ticket (POST /messages/ticket, CSRF header) and opens /messages/socket with it; the web module
   relays the messaging module's frames. Renders new messages, typing, read receipts, edits and deletes in
   an open chat, and keeps the navigation's unread badges current. CSP: script-src 'self', no inline code. */
(function () {
  "use strict";

  var chat = null, me = "", members = {}, t = {}, socket = null, retry = 1000, typingTimer = null, lastTyping = 0;

  function csrf() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"]; } catch (e) { return ""; }
  }

  function badge(id, delta, absolute) {
    var el = document.getElementById(id);
    if (!el) { return; }
    var n = absolute !== undefined ? absolute : Math.max(0, (parseInt(el.dataset.count || "0", 10) || 0) + delta);
    el.dataset.count = String(n);
    var num = el.querySelector(".n");
    if (num) { num.textContent = n ? String(n) : ""; }
    el.hidden = !n;
  }

  function lastSeq() {
    var items = document.querySelectorAll("#messages li.msg");
    var max = 0;
    for (var i = 0; i < items.length; i++) { max = Math.max(max, parseInt(items[i].dataset.seq, 10) || 0); }
    return max;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function render(m) {
    var mine = m.sender_id === me;
    var li = el("li", "msg" + (mine ? " mine" : "") + (m.deleted ? " deleted" : ""));
    li.id = "msg-" + m.id;
    li.dataset.id = String(m.id); li.dataset.seq = String(m.seq); li.dataset.sender = m.sender_id || "";
    var meta = el("p", "meta");
    meta.appendChild(el("span", "who", "@" + (members[m.sender_id] || "?")));
    meta.appendChild(document.createTextNode(" "));
    var time = el("time", "", (m.created_at || "").slice(11, 16));
    time.setAttribute("datetime", m.created_at || "");
    meta.appendChild(time);
    if (mine) {
      meta.appendChild(document.createTextNode(" "));
      var r = el("span", "receipt", t.sent); r.dataset.read = "false"; meta.appendChild(r);
    }
    li.appendChild(meta);
    if (m.reply_to) {
      var ref = el("p", "reply-ref muted", t.inreply); ref.dataset.replyTo = String(m.reply_to); li.appendChild(ref);
    }
    li.appendChild(el("p", "body", m.deleted ? t.deleted : m.body));
    if (!m.deleted && m.attachments && m.attachments.length) {
      var box = el("p", "attachments");
      m.attachments.forEach(function (id) {
        if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) { return; }
        var a = el("a"); a.href = "/messages/attachment/" + id;
        var img = el("img", "attachment"); img.src = "/messages/attachment/" + id + "?size=thumb";
        img.alt = t.image || ""; img.width = 160; img.height = 160; img.loading = "lazy";
        a.appendChild(img); box.appendChild(a);
      });
      li.appendChild(box);
    }
    if (!m.deleted) {
      var actions = el("div", "msg-actions");
      var reply = el("button", "link", t.reply); reply.type = "button"; reply.dataset.reply = String(m.id);
      actions.appendChild(reply);
      li.appendChild(actions);
    }
    return li;
  }

  function showMessage(m) {
    if (document.getElementById("msg-" + m.id)) { return; }
    var list = document.getElementById("messages");
    var li = render(m);
    // Frames of one chat may arrive out of order: keep the list sorted by seq.
    var after = null, items = list.querySelectorAll("li.msg");
    for (var i = items.length - 1; i >= 0; i--) {
      if ((parseInt(items[i].dataset.seq, 10) || 0) < m.seq) { after = items[i]; break; }
    }
    if (after) { after.parentNode.insertBefore(li, after.nextSibling); }
    else if (items.length) { list.insertBefore(li, items[0]); }
    else { list.appendChild(li); }
    if (m.sender_id !== me) {
      clearTyping();
      if (document.visibilityState === "visible") { send({ type: "read", conversation_id: chat, seq: m.seq }); }
    }
  }

  function clearTyping() { var tp = document.getElementById("typing"); if (tp) { tp.textContent = ""; } }

  function onFrame(f) {
    if (f.type === "ping") { send({ type: "pong" }); return; }
    if (f.type === "notification") {
      if (!(chat && f.notification && f.notification.kind === "message" && f.notification.data &&
            f.notification.data.conversation_id === chat)) { badge("badge-notes", 1); }
      return;
    }
    if (f.type === "message" && f.message) {
      var m = f.message;
      if (chat && m.conversation_id === chat) { showMessage(m); }
      else if (m.sender_id !== me && !f.replay) { badge("badge-messages", 1); }
      return;
    }
    if (!chat || f.conversation_id !== chat && !(f.message && f.message.conversation_id === chat)) { return; }
    if (f.type === "typing" && f.user_id !== me) {
      var tp = document.getElementById("typing");
      if (tp) {
        tp.textContent = "@" + (members[f.user_id] || "?") + " " + t.typing;
        clearTimeout(typingTimer); typingTimer = setTimeout(clearTyping, 5000);
      }
    } else if (f.type === "read" && f.user_id !== me) {
      var mine = document.querySelectorAll("#messages li.msg.mine .receipt");
      for (var i = 0; i < mine.length; i++) {
        var li = mine[i].closest("li.msg");
        if ((parseInt(li.dataset.seq, 10) || 0) <= f.seq) { mine[i].dataset.read = "true"; mine[i].textContent = t.read; }
      }
    } else if (f.type === "message.updated" && f.message) {
      var up = document.getElementById("msg-" + f.message.id);
      if (up) {
        up.querySelector(".body").textContent = f.message.deleted ? t.deleted : f.message.body;
        if (!up.querySelector(".edited") && !f.message.deleted) {
          var meta = up.querySelector(".meta"); meta.appendChild(document.createTextNode(" "));
          meta.appendChild(el("span", "edited", t.edited));
        }
      }
    } else if (f.type === "message.deleted") {
      var del = document.getElementById("msg-" + f.message_id);
      if (del) {
        del.classList.add("deleted");
        del.querySelector(".body").textContent = t.deleted;
        var acts = del.querySelector(".msg-actions"); if (acts) { acts.remove(); }
        var att = del.querySelector(".attachments"); if (att) { att.remove(); }
        var ed = del.querySelector(".edited"); if (ed) { ed.remove(); }
      }
    }
  }

  function send(frame) {
    if (socket && socket.readyState === 1) { socket.send(JSON.stringify(frame)); }
  }

  function state(text) { var s = document.getElementById("live-state"); if (s) { s.textContent = text; } }

  function connect() {
    fetch("/messages/ticket", { method: "POST", credentials: "same-origin",
                                headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" } })
      .then(function (r) { if (r.status === 401 || r.status === 403) { throw new Error("stop"); } return r.json(); })
      .then(function (tk) {
        var scheme = location.protocol === "https:" ? "wss://" : "ws://";
        socket = new WebSocket(scheme + location.host + tk.url, [tk.protocol, "ticket." + tk.ticket]);
        socket.addEventListener("open", function () {
          retry = 1000; state("");
          document.body.dataset.socket = "open";
          if (chat) { var after = {}; after[chat] = lastSeq(); send({ type: "resume", after: after }); }
        });
        socket.addEventListener("message", function (e) {
          var f = null;
          try { f = JSON.parse(e.data); } catch (err) { return; }
          if (f && typeof f.type === "string") { onFrame(f); }
        });
        socket.addEventListener("close", function (e) {
          document.body.dataset.socket = "closed";
          socket = null;
          if (e.code === 1008 && e.reason === "signed out") { return; }
          state(t.offline || "");
          setTimeout(connect, retry); retry = Math.min(retry * 2, 30000);
        });
      })
      .catch(function (err) {
        if (err && err.message === "stop") { return; }
        setTimeout(connect, retry); retry = Math.min(retry * 2, 30000);
      });
  }

  function setupChat(section) {
    chat = section.dataset.chat; me = section.dataset.me;
    try { members = JSON.parse(section.dataset.members); } catch (e) { members = {}; }
    t = { typing: section.dataset.tTyping, read: section.dataset.tRead, sent: section.dataset.tSent,
          edited: section.dataset.tEdited, deleted: section.dataset.tDeleted, reply: section.dataset.tReply,
          inreply: section.dataset.tInreply, offline: section.dataset.tOffline, image: section.dataset.tImage };
    var list = document.getElementById("messages");
    var last = list.querySelector("li.msg:last-of-type");
    if (last) { last.scrollIntoView({ block: "end" }); }
    var form = document.getElementById("compose");
    if (!form) { return; }
    var area = form.querySelector("textarea[name=body]");
    area.addEventListener("input", function () {
      var now = Date.now();
      if (now - lastTyping > 3000) { lastTyping = now; send({ type: "typing", conversation_id: chat }); }
    });
    area.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
    });
    // The HTMX answer to our own send: skip it when the live frame already showed that message.
    document.body.addEventListener("htmx:beforeSwap", function (e) {
      var id = e.detail.xhr && e.detail.xhr.getResponseHeader("X-Message-Id");
      if (id && document.getElementById("msg-" + id)) { e.detail.shouldSwap = false; }
    });
    document.body.addEventListener("htmx:afterRequest", function (e) {
      if (e.detail.elt === form && e.detail.successful) {
        form.reset(); cancelReply(); area.focus();
      }
    });
    list.addEventListener("click", function (e) {
      var btn = e.target.closest("button[data-reply]");
      if (!btn) { return; }
      var msg = document.getElementById("msg-" + btn.dataset.reply);
      document.getElementById("reply-to").value = btn.dataset.reply;
      document.getElementById("replying-text").textContent = t.reply + ": " +
        (msg ? msg.querySelector(".body").textContent.slice(0, 80) : "");
      document.getElementById("replying").hidden = false;
      area.focus();
    });
    var cancel = document.getElementById("reply-cancel");
    if (cancel) { cancel.addEventListener("click", cancelReply); }
  }

  function cancelReply() {
    var r = document.getElementById("reply-to"); if (r) { r.value = ""; }
    var p = document.getElementById("replying"); if (p) { p.hidden = true; }
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.dataset.live !== "true" || !("WebSocket" in window)) { return; }
    var section = document.getElementById("chat");
    if (section) { setupChat(section); }
    connect();
  });
})();
